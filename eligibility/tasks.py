"""Celery tasks: thin wrappers the beat schedule calls; the work is in the services.

Each task runs per firm, inside that firm's scope, and takes an optional ISO date (a task
redelivered or run late judges the day it was meant for). All are idempotent.
Beat runs them by their registered names (CELERY_BEAT_SCHEDULE in brokerage/settings.py).
"""

from __future__ import annotations

from datetime import date

from celery import shared_task

from brokerage.models import Firm

from . import calendar as business_days


def _day(today: str | None) -> date:
    return date.fromisoformat(today) if today else business_days.today()


@shared_task(name="eligibility.apply_due_conversions")
def apply_due_conversions(today: str | None = None) -> list[int]:
    """Before the open: accounts approved for portfolio margin effective today are flipped."""
    from .services import apply_due_conversions as convert

    return [application.pk for application in convert(today=_day(today))]


@shared_task(name="eligibility.expire_applications")
def expire_applications(today: str | None = None) -> list[int]:
    from .services import expire_applications as expire

    expired: list[int] = []
    for firm in Firm.objects.order_by("pk"):
        expired += [application.pk for application in expire(firm=firm, today=_day(today))]
    return expired

