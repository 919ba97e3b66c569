"""Business days on the firm's exchange calendar: margin's (``margin.business_days``), which the
margin-call due dates count on too. Kept under this name for eligibility's own callers."""

from margin.business_days import (  # noqa: F401
    DEFAULT_CALENDAR,
    CalendarError,
    add_business_days,
    business_days_between,
    exchange,
    is_business_day,
    next_business_day,
    today,
)
