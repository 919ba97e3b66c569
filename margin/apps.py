from django.apps import AppConfig


class MarginConfig(AppConfig):
    name = "margin"
    verbose_name = "Margin: market data, parameters, snapshots"

    def ready(self) -> None:
        from . import receivers, services  # noqa: F401  (services registers its approval kind)
