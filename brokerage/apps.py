from django.apps import AppConfig


class BrokerageConfig(AppConfig):
    name = "brokerage"
    verbose_name = "Brokerage: tenancy and audit"

    def ready(self) -> None:
        from . import logins, signals  # noqa: F401
