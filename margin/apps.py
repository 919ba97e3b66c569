from django.apps import AppConfig


class MarginConfig(AppConfig):
    name = "margin"
    verbose_name = "Margin: market data, parameters, snapshots"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
