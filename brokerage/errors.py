"""One family of refusals for every service: `DomainError` (code, field, message).

A service refuses bad input or a step its rules forbid by raising a `DomainError` before it
writes (or inside the transaction it rolls back), so a refusal changes nothing. Each subclass
carries the HTTP status the API answers with; the one DRF exception handler
(`brokerage.api_errors.exception_handler`) turns every refusal, and DRF's own validation and
parse errors, into one body:

    {"errors": [{"field": "reasons", "code": "required", "message": "..."}]}

The admin shows `message`; a caller catches the class it cares about. Apps subclass these
(`eligibility.errors.NotEligible`, `accounts.services.BookError`) and never define a second
family.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class DomainError(ValueError):
    """A refused request. ``errors`` lists every problem when there are several."""

    code = "invalid"
    status = 400

    def __init_subclass__(cls, *, code: str | None = None, status: int | None = None,
                          **kwargs: Any) -> None:
        # A refusal kind is declared in its class line: `class NotFound(DomainError,
        # code="not_found", status=404)`; what it leaves out it inherits.
        super().__init_subclass__(**kwargs)
        if code is not None:
            cls.code = code
        if status is not None:
            cls.status = status

    def __init__(self, message: str = "", *, field: str = "", code: str | None = None,
                 details: Any = None,
                 errors: Iterable[tuple[str, str, str]] | None = None) -> None:
        listed = [tuple(e) for e in errors] if errors is not None else []
        if not message and listed:
            message = "; ".join(f"{f}: {m}" if f else m for f, _, m in listed)
            field = field or listed[0][0]
        super().__init__(f"{field}: {message}" if field else message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.details = details
        self._errors = listed

    @property
    def errors(self) -> list[dict[str, str]]:
        """The problems as the API body lists them: field, code, message each."""
        if self._errors:
            return [{"field": f, "code": c, "message": m} for f, c, m in self._errors]
        return [{"field": self.field, "code": self.code, "message": self.message}]


class InvalidInput(DomainError):
    """A value that is not well formed or out of range (the family's own 400 ``invalid``)."""


class NotPermitted(DomainError, code="not_permitted", status=403):
    """The actor's role, or a per-object grant, does not allow this step."""


class FourEyesViolation(NotPermitted, code="four_eyes"):
    """The person who asked for a change may never also approve it."""


class NotFound(DomainError, code="not_found", status=404):
    """No such object in the actor's firm: another firm's id reads as missing."""


class IllegalTransition(DomainError, code="illegal_transition", status=409):
    """The object is not in a state this step applies to."""


class Conflict(IllegalTransition, code="conflict"):
    """Someone changed the object first (a concurrent or stale decision): re-read it."""


class Unprocessable(DomainError, code="unprocessable", status=422):
    """Well formed, but the rules refuse it as it stands, e.g. not eligible."""


class PreconditionRequired(DomainError, code="precondition_required", status=428):
    """A decision sent without ``If-Match``: the caller must say which version it decided on."""


class PreconditionFailed(DomainError, code="precondition_failed", status=412):
    """The ``If-Match`` version is not the current one: someone changed it since it was read."""
