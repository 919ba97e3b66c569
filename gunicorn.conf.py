"""gunicorn's settings for the back office (`make serve`, and production with other env).

gthread workers: a request mostly waits on PostgreSQL, so a few threads per process serve more
than more processes would on two cores (each process holds its own Django, numpy and numba).
Access lines come from the application (operations.middleware, one JSON line per request with
its request id, user and firm); gunicorn's own lines are JSON too.
"""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = 30
max_requests = 2000  # a slow leak is recycled, staggered by the jitter
max_requests_jitter = 200
accesslog = None
# Behind a load balancer that terminates TLS: trust its X-Forwarded-* from these addresses.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "operations.logs.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json",
                             "stream": "ext://sys.stderr"}},
    "loggers": {"gunicorn.error": {"handlers": ["console"], "level": "INFO",
                                   "propagate": False}},
}


def child_exit(server, worker):
    """django-prometheus' counters of a dead worker stay summed, its live gauges go
    (prometheus_client's multiprocess mode; PROMETHEUS_MULTIPROC_DIR set)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
