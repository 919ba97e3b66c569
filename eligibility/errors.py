"""Refusals of the eligibility services. Each names the field or rule it concerns.

The API maps them to HTTP statuses (api/views.py); the admin shows the message; a service caller
catches the class it cares about. A refusal changes nothing: it is raised before any write, or
inside the transaction that it rolls back.
"""

from __future__ import annotations

from typing import Any


class EligibilityError(ValueError):
    code = "invalid"

    def __init__(self, message: str, *, field: str = "", details: Any = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
        self.details = details


class InvalidRuleSet(EligibilityError):
    """Thresholds that break a regulatory floor or are not well formed."""

    code = "invalid_rule_set"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors),
                         field=errors[0]["field"] if errors else "", details=errors)
        self.errors = errors


class InvalidRequest(EligibilityError):
    code = "invalid"


class NotPermitted(EligibilityError):
    """The actor's role (or a per-object grant) does not allow this step."""

    code = "not_permitted"


class FourEyesViolation(NotPermitted):
    """The same person may never both submit (or review) and decide; nor propose and approve."""

    code = "four_eyes"


class IllegalTransition(EligibilityError):
    """The application (or rule set) is not in a state this step applies to."""

    code = "illegal_transition"


class Conflict(IllegalTransition):
    """Someone else changed the row first (a concurrent decision): re-read and try again."""

    code = "conflict"


class NotEligible(EligibilityError):
    """Approval refused: the evaluation at approval time fails one or more rules."""

    code = "not_eligible"
