"""The desk's firm risk section (issue 19): the firm's totals and how they moved today, the
largest requirements, the accounts closest to a call, concentration by class group, oracle
rejections and stale margin (``figures``), and the firm-wide price-move simulator
(``margin.simulation``). Its home items register on import (``views``)."""

from .views import urlpatterns

__all__ = ["urlpatterns"]
