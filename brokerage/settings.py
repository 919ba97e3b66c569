"""Settings read the environment; only settings differ between the embedded default and production.

- DATABASE_URL: e.g. postgres://postgres@127.0.0.1:5432/pmargin. Absent: SQLite in the repo.
- CELERY_BROKER_URL: e.g. redis://127.0.0.1:6379/0 or amqp://guest:guest@127.0.0.1:5672//.
  Absent: Celery runs tasks eagerly in-process (no broker, no worker).
- DJANGO_SECRET_KEY, DJANGO_DEBUG, DJANGO_ALLOWED_HOSTS, EMAIL_BACKEND.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG=0")
    SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo"
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
    "brokerage",
    "accounts",
    "margin",
    "eligibility",
    "web",
    "demo",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "brokerage.middleware.TenantScopeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite serialises writers; wait for the lock rather than fail (demo with eager tasks).
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row; anonymous users hold nothing
GUARDIAN_RAISE_403 = False

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "America/New_York"  # the exchange's clock: business days follow NYSE/Cboe
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    # Tokens first: DRF answers an anonymous request with the first authenticator's challenge,
    # so it is a 401 with `WWW-Authenticate: Bearer realm="api"` (session first gives none: 403).
    # HTTP Basic is off: scripts use tokens, which never carry a user's password.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "brokerage.api_auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
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


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# The sweep of dirty accounts (margin.sweep). Chunk: accounts valued per task. Debounce: a burst
# of inputs within it causes one sweep. Beat: a sweep every so many seconds at all hours (crypto
# trades around the clock). Time limits: on the per-account compute path a chunk of 2,000
# accounts takes 46-68 s on this 2-core machine when quiet, 140-300 s under load (issue 10:
# 23-34 s and 70-150 s per 1,000); the batch path will allow far tighter limits. Lease: a claim
# older than this is a dead worker's, taken over by the next sweep. Pending grace: a debounced
# sweep not started this long after it was due is taken as lost (the next input sends another).
MARGIN_SWEEP_CHUNK = int(os.environ.get("MARGIN_SWEEP_CHUNK", 2000))
# A small run (a tick's holders) is split so each of this many worker processes takes a share,
# in chunks of at least MARGIN_SWEEP_MIN_CHUNK accounts (margin.sweep.chunk_size).
MARGIN_SWEEP_PARALLEL = int(os.environ.get("MARGIN_SWEEP_PARALLEL", 2))
MARGIN_SWEEP_MIN_CHUNK = int(os.environ.get("MARGIN_SWEEP_MIN_CHUNK", 100))
MARGIN_SWEEP_DEBOUNCE_S = _seconds("MARGIN_SWEEP_DEBOUNCE_S", 1.0)
MARGIN_SWEEP_BEAT_S = _seconds("MARGIN_SWEEP_BEAT_S", 5.0)
MARGIN_SWEEP_SOFT_TIME_LIMIT_S = _seconds("MARGIN_SWEEP_SOFT_TIME_LIMIT_S", 540.0)
MARGIN_SWEEP_TIME_LIMIT_S = _seconds("MARGIN_SWEEP_TIME_LIMIT_S", 600.0)
MARGIN_SWEEP_LEASE_S = _seconds("MARGIN_SWEEP_LEASE_S", MARGIN_SWEEP_TIME_LIMIT_S + 30.0)
MARGIN_SWEEP_PENDING_GRACE_S = _seconds("MARGIN_SWEEP_PENDING_GRACE_S", 30.0)
# Intraday history (DESIGN.md "Scale"): a snapshot when the requirement moved more than this
# fraction since the account's last snapshot, and by at least the floor (dollars).
MARGIN_SNAPSHOT_REQUIREMENT_MOVE = os.environ.get("MARGIN_SNAPSHOT_REQUIREMENT_MOVE", "0.05")
MARGIN_SNAPSHOT_REQUIREMENT_FLOOR = os.environ.get("MARGIN_SNAPSHOT_REQUIREMENT_FLOOR", "100")
# The end-of-day run (margin.end_of_day): beat looks this often for a closed session not yet
# run; crypto trades around the clock, so its day ends at a daily cut (UTC, HH:MM).
MARGIN_END_OF_DAY_BEAT_S = _seconds("MARGIN_END_OF_DAY_BEAT_S", 300.0)
MARGIN_CRYPTO_DAILY_CUT = os.environ.get("MARGIN_CRYPTO_DAILY_CUT", "00:00")


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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "WARNING")},
}
