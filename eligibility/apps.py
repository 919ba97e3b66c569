from django.apps import AppConfig


class EligibilityConfig(AppConfig):
    name = "eligibility"
    verbose_name = "Eligibility and portfolio-margin approvals"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (signal receivers: stale detection, cures)
