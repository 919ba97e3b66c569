from django.apps import AppConfig


class OperationsConfig(AppConfig):
    """Running the back office in production: health and readiness, metrics, structured logs
    and the request id carried into Celery tasks.

    Top of the one-way dependency rule (DESIGN.md), beside web and demo: it reads every app
    (the dirty backlog, open calls, the audit chains) and no app imports it. Its Celery signal
    handlers are connected here: workers and beat set Django up before they start.
    """

    name = "operations"
    verbose_name = "Operations: health, metrics, logs"

    def ready(self) -> None:
        from . import celery_signals  # noqa: F401
