"""Structured logs: one JSON object per line, with the request id, user and firm in scope.

Wired by ``LOGGING`` in settings (by dotted name: settings import no app). The context comes
from the scopes the request or task runs in: the request id (``brokerage.scope``, set by the
tenant middleware from a sane ``X-Request-ID`` or generated, and by the Celery signals in a
worker from the task's headers), the firm in scope, and the user of the request being served
(``operations.middleware``). Nothing here imports Django models, so gunicorn's own loggers can
use the formatter before Django is set up.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

from django.utils.functional import empty

#: the request being served (set by operations.middleware.RequestLogMiddleware): its user
current_request: contextvars.ContextVar = contextvars.ContextVar("current_request", default=None)

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
# Fields a call may add with `extra=` that are worth a key of their own.
_EXTRA = ("task", "task_id", "state", "duration_ms", "method", "path", "status")


def _context() -> dict:
    out: dict = {"request_id": None, "user_id": None, "firm_id": None}
    try:
        from brokerage.scope import current_firm_or_none, current_request_id
    except Exception:  # gunicorn's master, before Django
        return out
    out["request_id"] = current_request_id() or None
    firm = current_firm_or_none()
    out["firm_id"] = getattr(firm, "pk", None)
    request = current_request.get()
    user = getattr(request, "user", None) if request is not None else None
    # Only a user already resolved: a lazy one would query the database from a log call.
    user = getattr(user, "_wrapped", user)
    if user is not None and user is not empty and getattr(user, "is_authenticated", False):
        out["user_id"] = user.pk
    return out


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(),
        }
        # A line may name its firm itself (the request's line, written after the view's scope).
        if record.__dict__.get("firm_id") is not None:
            entry["firm_id"] = record.__dict__["firm_id"]
        for key in _EXTRA:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)
