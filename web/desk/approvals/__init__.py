"""The desk's approvals section (/desk/approvals/): the queue, an application's page, a change's
page, the history (views.py); its items on the home (home_items.py); how it says things
(present.py)."""

from . import home_items  # noqa: F401  (registers the section's home items)
from .views import urlpatterns

__all__ = ["urlpatterns"]
