from django.apps import AppConfig


class MarginConfig(AppConfig):
    name = "margin"
    verbose_name = "Margin: market data, parameters, snapshots"

    def ready(self) -> None:
        from brokerage.audit import register_content_check

        from . import receivers, services  # noqa: F401  (services registers its approval kind)
        from .calls import extensions, policy, restrictions  # noqa: F401  (approval kinds)
        from .calls import receivers as call_receivers  # noqa: F401
        from .intraday import monitor  # noqa: F401  (the book_changed receiver)
        from .liquidation import services as liquidation  # noqa: F401  (approval kind)
        from .snapshots import CHUNK_EVENT, verify_chunk

        # The verifier checks stored snapshots against their chunk's digest.
        register_content_check(CHUNK_EVENT, verify_chunk)
