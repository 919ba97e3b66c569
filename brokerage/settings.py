"""Settings read the environment; only settings differ between the embedded default and production.

- DATABASE_URL: e.g. postgres://postgres@127.0.0.1:5432/pmargin. Absent: SQLite in the repo.
- CELERY_BROKER_URL: e.g. redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//.
  Absent: Celery runs tasks eagerly in-process (no broker, no worker).
- DJANGO_DEBUG: "1" for the demo, the tests and the benches (the Makefile and .ci/run set it).
  Unset or anything else: production (Secure cookies, HSTS, SSL redirect, no traceback pages),
  which needs DJANGO_SECRET_KEY.
- DJANGO_SECURE_SSL_REDIRECT: "0" when a proxy in front already redirects to HTTPS (production
  only; default on). DJANGO_SECURE_PROXY_SSL_HEADER: the header that proxy sets, e.g.
  "HTTP_X_FORWARDED_PROTO" (its value must be "https").
- PMARGIN_DEMO: "1" under `make demo` (with DJANGO_DEBUG=1) and `make serve` (production
  settings over plain HTTP, SERVE_PLAIN_HTTP=1) only: the published demo password works,
  `seed_demo` and `demo_otp_code` run. Nowhere else.
- CLIENT_SESSION_IDLE_S: a client's session ends after this many idle seconds (default 1800).
- DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, EMAIL_BACKEND.
- AUDIT_HMAC_KEY (+ AUDIT_HMAC_KEY_ID, AUDIT_HMAC_RETIRED_KEYS), AUDIT_SIGNING_KEY (+
  AUDIT_SIGNING_RETIRED_PUBLIC_KEYS), AUDIT_ANCHOR_DIR: the audit trail's keys and anchors
  (brokerage.audit_keys). Production (DJANGO_DEBUG=0) refuses to start without the two keys.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

# Production is the default: only an explicit DJANGO_DEBUG=1 (the demo, the tests, the benches)
# turns the development settings on.
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
# The demo (its published password, seed_demo, demo_otp_code): `make demo` (development
# settings) or `make serve` (the production stack over plain HTTP on 127.0.0.1), never a real
# production installation, which serves over TLS.
DEMO = os.environ.get("PMARGIN_DEMO", "0") == "1" and (
    DEBUG or os.environ.get("SERVE_PLAIN_HTTP", "0") == "1")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")
    SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo"

# The audit trail's keys come from the environment only, never the database (brokerage.audit_keys
# reads and checks them; with DJANGO_DEBUG=1 and a key unset it generates one once into var/).
AUDIT_HMAC_KEY = os.environ.get("AUDIT_HMAC_KEY", "")
AUDIT_HMAC_KEY_ID = os.environ.get("AUDIT_HMAC_KEY_ID", "k1")
AUDIT_HMAC_RETIRED_KEYS = os.environ.get("AUDIT_HMAC_RETIRED_KEYS", "")
AUDIT_SIGNING_KEY = os.environ.get("AUDIT_SIGNING_KEY", "")
AUDIT_SIGNING_RETIRED_PUBLIC_KEYS = os.environ.get("AUDIT_SIGNING_RETIRED_PUBLIC_KEYS", "")
AUDIT_KEY_DIR = BASE_DIR / "var"
# Development keys generated into AUDIT_KEY_DIR: DJANGO_DEBUG=1 only (read here, as the test
# runner turns DEBUG off after settings load).
AUDIT_DEVELOPMENT_KEYS = DEBUG
# Signed checkpoints of every chain's head, outside the database: an append-only directory here
# (production: object storage with a retention lock, mounted or synced to this path).
AUDIT_ANCHOR_DIR = os.environ.get("AUDIT_ANCHOR_DIR", str(BASE_DIR / "var" / "audit-anchors"))
if not DEBUG:
    for _name in ("AUDIT_HMAC_KEY", "AUDIT_SIGNING_KEY"):
        if not os.environ.get(_name):
            raise RuntimeError(f"{_name} must be set when DJANGO_DEBUG=0 (README: the audit "
                               "trail's keys)")
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc assets, served from here
    "guardian",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "brokerage",
    "accounts",
    "margin",
    "eligibility",
    "web",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Idle and absolute session limits, then the second factor: before anything reads the user.
    "brokerage.middleware.SessionExpiryMiddleware",
    "brokerage.middleware.SecondFactorMiddleware",
    "brokerage.middleware.TenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last: turns a login refused for a lockout into the lockout page (axes' own docs say so).
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "brokerage.urls"
WSGI_APPLICATION = "brokerage.wsgi.application"
ASGI_APPLICATION = "brokerage.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock rather than fail (demo with eager tasks).
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses any login attempt of a locked-out user or address before a password is
    # checked (every door: /accounts/login/, /admin/login/; the API takes tokens, not passwords).
    "axes.backends.AxesStandaloneBackend",
    "brokerage.passwords.PasswordBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous users hold nothing
GUARDIAN_RAISE_403 = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    # The demo's password is published (README, seed output): nobody may choose it.
    {"NAME": "brokerage.passwords.PublishedPasswordValidator"},
]

# -- logins: lockout (django-axes), second factor (django-otp), sessions ----------------------
# A user is locked out after AXES_FAILURE_LIMIT failed passwords, an address after
# LOGIN_ADDRESS_FAILURE_LIMIT (higher: an office behind one address holds many people), within
# the cool-off; a firm admin unlocks a user earlier (brokerage.logins.unlock_login).
AXES_HANDLER = "brokerage.logins.LoginLockoutHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = int(os.environ.get("LOGIN_USER_FAILURE_LIMIT", 5))
LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("LOGIN_ADDRESS_FAILURE_LIMIT", 20))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("LOGIN_LOCKOUT_MINUTES", 30)))
AXES_RESET_ON_SUCCESS = True
# A refused attempt during a lockout neither counts nor restarts the cool-off (the audit trail
# still records it: login.refused_locked_out).
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_ENABLE_ADMIN = False  # its pages would list every firm's attempts; unlock is per firm
AXES_VERBOSE = False
# The address a login comes from: REMOTE_ADDR, or behind LOGIN_TRUSTED_PROXIES proxies the
# entry the nearest of them appended to X-Forwarded-For (brokerage.logins.client_address).
AXES_CLIENT_IP_CALLABLE = "brokerage.logins.client_address"
LOGIN_TRUSTED_PROXIES = int(os.environ.get("LOGIN_TRUSTED_PROXIES", 0))

OTP_TOTP_ISSUER = "Portfolio-margin back office"
OTP_TOTP_THROTTLE_FACTOR = 1  # each wrong code doubles the wait before the next one counts
OTP_STATIC_THROTTLE_FACTOR = 1
SECOND_FACTOR_RECOVERY_CODES = 10

# Sessions (brokerage.middleware.SessionExpiryMiddleware): staff end after 30 minutes idle,
# clients after a configurable idle time; everyone's 12 hours after the login.
STAFF_SESSION_IDLE_S = 30 * 60
CLIENT_SESSION_IDLE_S = int(os.environ.get("CLIENT_SESSION_IDLE_S", 30 * 60))
SESSION_ABSOLUTE_S = 12 * 60 * 60
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_S  # the cookie never outlives the absolute limit

LANGUAGE_CODE = "en-us"
TIME_ZONE = "America/New_York"  # the exchange's clock: business days follow NYSE/Cboe
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

# -- transport and browser protections ---------------------------------------------------------
# Every page's scripts and styles come from our own static files: no inline <script>, no style
# attribute (django-csp sends the header on every response).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    },
}
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # no script of ours reads it: forms carry the token
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS", 365 * 24 * 3600))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_SSL_REDIRECT = os.environ.get("DJANGO_SECURE_SSL_REDIRECT", "1") == "1"
    if not SECURE_SSL_REDIRECT:
        # Said on purpose: the proxy in front redirects plain HTTP (check --deploy would warn).
        SILENCED_SYSTEM_CHECKS = ["security.W008"]
    if os.environ.get("DJANGO_SECURE_PROXY_SSL_HEADER"):
        SECURE_PROXY_SSL_HEADER = (os.environ["DJANGO_SECURE_PROXY_SSL_HEADER"], "https")

REST_FRAMEWORK = {
    # Tokens first: DRF answers an anonymous request with the first authenticator's challenge,
    # so it is a 401 with `WWW-Authenticate: Bearer realm="api"` (session first gives none: 403).
    # HTTP Basic is off: scripts use tokens, which never carry a user's password.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "brokerage.api_auth.BearerTokenAuthentication",
        "brokerage.api_auth.VerifiedSessionAuthentication",
    ],
    # A session is one more door: a staff session counts only once its second factor is
    # verified (brokerage.api_auth.VerifiedSessionAuthentication).
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, strictly: no NaN/Infinity, no repeated keys, nesting bounded (a 400 each).
    "DEFAULT_PARSER_CLASSES": ["brokerage.parsers.StrictJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["brokerage.api_query.FilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "brokerage.api_schema.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "brokerage.api_query.Pagination",
    "PAGE_SIZE": 100,
    # Every error, DRF's and the services', in one body: {"errors": [{field, code, message}]}.
    "EXCEPTION_HANDLER": "brokerage.api_errors.exception_handler",
    # Counted in the cache below; rates in API_THROTTLE_RATES (brokerage.api_throttles).
    "DEFAULT_THROTTLE_CLASSES": [
        "brokerage.api_throttles.AnonymousThrottle",
        "brokerage.api_throttles.UserThrottle",
        "brokerage.api_throttles.TokenThrottle",
    ],
}
# Requests per period (DRF's rate strings) before a 429 with Retry-After: without credentials
# (per address), per signed-in user, per API token. Environment: API_THROTTLE_ANON etc.
API_THROTTLE_RATES = {
    "anon": os.environ.get("API_THROTTLE_ANON", "60/min"),
    "user": os.environ.get("API_THROTTLE_USER", "1200/min"),
    "token": os.environ.get("API_THROTTLE_TOKEN", "1200/min"),
}
# The cache (the API's throttle counts): Redis when CACHE_URL names one (shared by every web
# process, as production needs), else this process's memory (the embedded demo, the tests).
CACHES = {"default": (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache",
     "LOCATION": os.environ["CACHE_URL"]} if os.environ.get("CACHE_URL")
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"})}
SPECTACULAR_SETTINGS = {
    "TITLE": "Portfolio-margin back office API",
    "VERSION": "1.0.0",
    # Who may read the schema: any authenticated user, firm member or not; an anonymous
    # request gets the one 401 body (the view uses DRF's authentication above).
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SERVE_INCLUDE_SCHEMA": False,
    # drf-spectacular only ever calls `.none()` on this manager, to learn a model's filters and
    # relations; the tenant default manager (`objects`) would need a firm in scope, and the
    # schema is the same for every firm and for none.
    "DEFAULT_QUERY_MANAGER": "_base_manager",
    # Request and response components apart: read-only fields are not asked of a caller.
    "COMPONENT_SPLIT_REQUEST": True,
    # The documentation pages' assets from drf-spectacular-sidecar, served as static files.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Choice sets named once (by dotted path: settings import no app).
    "ENUM_NAME_OVERRIDES": {
        "MarginCallStatusEnum": "margin.calls.models.MarginCall.Status",
        "MarginCallKindEnum": "margin.calls.models.MarginCall.Kind",
        "CancelReasonEnum": "margin.calls.models.MarginCall.CancelReason",
        "RestrictionKindEnum": "margin.calls.models.Restriction.Kind",
        "RestrictionStateEnum": "margin.calls.models.Restriction.State",
        "AccountStatusEnum": "accounts.models.Account.Status",
        "VersionStatusEnum": "brokerage.models.VersionStatus",
        "ExecutionSideEnum": "margin.executions.models.Execution.Side",
        "ExecutionKindEnum": "margin.executions.models.Execution.Kind",
        "ListedContractKindEnum": "margin.executions.api.LISTED_CONTRACT_KINDS",
        "MarketDataSourceEnum": "margin.models.PriceObservation.Source",
        "LoadedSourceEnum": "margin.api.market.LOADED_SOURCES",
    },
}

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = "margin-desk@pmargin.example"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Eager tasks still pass through a producer (Celery publishes its task signals): an
    # in-memory transport keeps that off the network (no attempt at amqp://localhost, no
    # "No hostname was supplied" warning in the demo).
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
# Late ack: a task lost with its worker is redelivered (after the broker's visibility
# timeout); the sweep does not wait for that, its claim lease hands the chunk on sooner.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
# Two queues (DESIGN.md "Scale"): `sweep` for the CPU-bound margin chunks, on as many machines
# as needed (`celery -A brokerage worker -Q sweep`), `default` for notices and exports. A worker
# started without -Q consumes both (the single-machine setup, the tests).
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_QUEUES = (Queue("sweep"), Queue("default"))
CELERY_TASK_ROUTES = {
    "margin.tasks.sweep_*": {"queue": "sweep"},
    "margin.tasks.recompute_*": {"queue": "sweep"},
}
# Late ack with long chunks: a worker takes one message at a time, not a prefetched handful it
# would hold (and delay) while computing.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker keeps its database connection from task to task (CONN_MAX_AGE, health-checked), as
# a web process does from request to request: Celery's Django fixup closes every connection
# after each task unless this is set, and it then recycles them only every this many tasks;
# brokerage.celery closes an old or broken one between tasks as Django does between requests.
# A new PostgreSQL backend per chunk paid its fork, login and catalog-cache warm-up each time
# (an end-of-day run at 100k accounts opened 53).
CELERY_DB_REUSE_MAX = 1000


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# The sweep of dirty accounts (margin.sweep). Chunk: accounts valued per task. Debounce: a burst
# of inputs within it causes one sweep. Beat: a sweep every so many seconds at all hours (crypto
# trades around the clock). Time limits: on the per-account compute path a chunk of 2,000
# accounts takes 46-68 s on this 2-core machine when quiet, 140-300 s under load (issue 10:
# 23-34 s and 70-150 s per 1,000); the batch path will allow far tighter limits. Lease: a claim
# older than this is a dead worker's, taken over by the next sweep. Pending grace: a debounced
# sweep not started this long after it was due is taken as lost (the next input sends another).
# 4,000: the end-of-day run at 100,000 accounts took 28.8-29.4 s in chunks of 4,000 against
# 30.2-31.1 s in chunks of 2,000 (make bench-e2e, A/B in one spell: fewer chunks, each worker
# 3-4 s less CPU in what every chunk does once); a tick's chunks are sized by its holders.
MARGIN_SWEEP_CHUNK = int(os.environ.get("MARGIN_SWEEP_CHUNK", 4000))
# A small run (a tick's holders) is split so each of this many worker processes takes a share,
# in chunks of at least MARGIN_SWEEP_MIN_CHUNK accounts (margin.sweep.chunk_size).
MARGIN_SWEEP_PARALLEL = int(os.environ.get("MARGIN_SWEEP_PARALLEL", 2))
MARGIN_SWEEP_MIN_CHUNK = int(os.environ.get("MARGIN_SWEEP_MIN_CHUNK", 100))
# Chunks of at least this many portfolio-margin accounts build the universe a worker process
# keeps across chunks when it has none current (margin.valuing.UniverseCache: an end-of-day
# run's); smaller ones (a tick's) are valued on the kept one, brought up to date in part after a
# move, and on their own contracts only where it cannot be.
MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS = int(os.environ.get("MARGIN_SWEEP_UNIVERSE_MIN_ACCOUNTS",
                                                        1000))
MARGIN_SWEEP_DEBOUNCE_S = _seconds("MARGIN_SWEEP_DEBOUNCE_S", 1.0)
MARGIN_SWEEP_BEAT_S = _seconds("MARGIN_SWEEP_BEAT_S", 5.0)
MARGIN_SWEEP_SOFT_TIME_LIMIT_S = _seconds("MARGIN_SWEEP_SOFT_TIME_LIMIT_S", 540.0)
MARGIN_SWEEP_TIME_LIMIT_S = _seconds("MARGIN_SWEEP_TIME_LIMIT_S", 600.0)
MARGIN_SWEEP_LEASE_S = _seconds("MARGIN_SWEEP_LEASE_S", MARGIN_SWEEP_TIME_LIMIT_S + 30.0)
MARGIN_SWEEP_PENDING_GRACE_S = _seconds("MARGIN_SWEEP_PENDING_GRACE_S", 30.0)
# How long the market change log keeps a row (margin.market_cache: each worker reads the
# changes its kept market data has not seen; older rows are pruned hourly).
MARGIN_MARKET_CHANGES_KEPT_S = _seconds("MARGIN_MARKET_CHANGES_KEPT_S", 3600.0)
# Intraday history (DESIGN.md "Scale"): a snapshot when the requirement moved more than this
# fraction since the account's last snapshot, and by at least the floor (dollars).
MARGIN_SNAPSHOT_REQUIREMENT_MOVE = os.environ.get("MARGIN_SNAPSHOT_REQUIREMENT_MOVE", "0.05")
MARGIN_SNAPSHOT_REQUIREMENT_FLOOR = os.environ.get("MARGIN_SNAPSHOT_REQUIREMENT_FLOOR", "100")
# The end-of-day run (margin.end_of_day): beat looks this often for a closed session not yet
# run; crypto trades around the clock, so its day ends at a daily cut (UTC, HH:MM).
MARGIN_END_OF_DAY_BEAT_S = _seconds("MARGIN_END_OF_DAY_BEAT_S", 300.0)
MARGIN_CRYPTO_DAILY_CUT = os.environ.get("MARGIN_CRYPTO_DAILY_CUT", "00:00")
# Every chain's head is checkpointed (signed, anchored outside the database) this often.
AUDIT_CHECKPOINT_BEAT_S = _seconds("AUDIT_CHECKPOINT_BEAT_S", 300.0)


# Beat names tasks by their registered names, so settings import no app (DESIGN.md). Times are
# exchange time (CELERY_TIMEZONE); the eligibility tasks check business days themselves, so a run
# on a holiday is harmless.
CELERY_BEAT_SCHEDULE = {
    # The sweep of dirty accounts, at all hours; a run not started before the next one is due
    # expires (the next one does its work).
    "margin-sweep-dirty": {
        "task": "margin.tasks.sweep_dirty",
        "schedule": MARGIN_SWEEP_BEAT_S,
        "options": {"expires": MARGIN_SWEEP_BEAT_S},
    },
    # Each firm's end-of-day run after its exchange's close and at the crypto cut: asked every
    # few minutes, started once per firm, calendar and session (margin.end_of_day).
    "margin-end-of-day": {
        "task": "margin.tasks.end_of_day_due",
        "schedule": MARGIN_END_OF_DAY_BEAT_S,
        "options": {"expires": MARGIN_END_OF_DAY_BEAT_S},
    },
    # The market change log's old rows (margin.market_cache).
    "margin-prune-market-changes": {
        "task": "margin.tasks.prune_market_changes",
        "schedule": 3600.0,
        "options": {"expires": 3600.0},
    },
    # Collateral calls are due in hours: those past their due time are made overdue.
    "margin-collateral-calls-due": {
        "task": "margin.tasks.collateral_calls_due",
        "schedule": 60.0,
        "options": {"expires": 60.0},
    },
    # Every account marked dirty every 15 minutes in market hours: backs up the input-driven
    # marks (a process that died between an input's commit and its mark).
    "margin-recompute-all": {
        "task": "margin.tasks.recompute_all",
        "schedule": crontab(minute="*/15", hour="9-16", day_of_week="mon-fri"),
        "options": {"expires": 15 * 60},
    },
    # Every audit chain's head, signed and written to the anchor directory (brokerage.audit).
    "audit-checkpoint": {
        "task": "brokerage.tasks.checkpoint_audit_chains",
        "schedule": AUDIT_CHECKPOINT_BEAT_S,
        "options": {"expires": AUDIT_CHECKPOINT_BEAT_S},
    },
    "eligibility-apply-due-conversions": {  # before the open
        "task": "eligibility.apply_due_conversions",
        "schedule": crontab(hour=7, minute=0, day_of_week="mon-fri"),
        "options": {"expires": 60 * 60},  # a day's run, not a backlog
    },
    "eligibility-expire-applications": {
        "task": "eligibility.expire_applications",
        "schedule": crontab(hour=18, minute=0),
        "options": {"expires": 60 * 60},  # a day's run, not a backlog
    },
}


# --------------------------------------------------------------------------- operations (issue 17)
# Serving, health, metrics and logs (the `operations` app, README "Production"). One block, read
# last, so it may adjust what is set above.
INSTALLED_APPS += ["django_prometheus", "operations"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    MIDDLEWARE[0],  # SecurityMiddleware
    "operations.middleware.StaticFilesMiddleware",  # WhiteNoise: static files from gunicorn
    *MIDDLEWARE[1:],
    "operations.middleware.RequestLogMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# `make serve` runs the production settings on plain HTTP at 127.0.0.1: this turns off only what
# needs TLS (Secure cookies and the HTTPS redirect). Never set it behind a real load balancer.
SERVE_PLAIN_HTTP = os.environ.get("SERVE_PLAIN_HTTP", "0") == "1"
if SERVE_PLAIN_HTTP:
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL_REDIRECT = False
# A load balancer probes over plain HTTP inside the network: no redirect for the probes.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# /readyz: how long the broker is given, and the ages past which a dependency is not ready.
READYZ_BROKER_TIMEOUT_S = _seconds("READYZ_BROKER_TIMEOUT_S", 1.0)
READYZ_WORKER_STALE_S = _seconds("READYZ_WORKER_STALE_S", 30.0)  # workers write every 10 s
READYZ_BEAT_STALE_S = _seconds("READYZ_BEAT_STALE_S", 60.0)  # beat sends a sweep every 5 s
READYZ_MAX_DIRTY_AGE_S = _seconds("READYZ_MAX_DIRTY_AGE_S", 600.0)  # a chunk's time limit
# /metrics: served to these addresses (networks allowed), or to a scraper sending
# `Authorization: Bearer <METRICS_BEARER_TOKEN>` when that is set.
METRICS_ALLOWED_IPS = os.environ.get("METRICS_ALLOWED_IPS", "127.0.0.1,::1").split(",")
METRICS_BEARER_TOKEN = os.environ.get("METRICS_BEARER_TOKEN", "")
# One JSON object per line (operations.logs); LOG_FORMAT=text for people at a terminal. Celery
# workers keep this configuration instead of installing their own handlers.
LOG_FORMAT = os.environ.get("LOG_FORMAT", "text" if DEBUG else "json")
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "operations.logs.JsonFormatter"},
        "text": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
    # One line per request at INFO (the status and duration) whatever the root level; off in
    # development (runserver prints its own) unless REQUEST_LOG_LEVEL=INFO.
    "loggers": {"pmargin.request": {
        "level": os.environ.get("REQUEST_LOG_LEVEL", "WARNING" if DEBUG else "INFO")}},
}
