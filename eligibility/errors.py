"""Refusals of the eligibility services: the project's one `DomainError` family
(`brokerage.errors`), with the two kinds only eligibility raises.

The names below are kept so callers read in the trade's terms (`InvalidRequest`,
`NotEligible`); they are the core classes or thin subclasses of them, so the one API error
handler maps every one to its status and body.
"""

from __future__ import annotations

from brokerage.errors import (
    Conflict,
    DomainError,
    FourEyesViolation,
    IllegalTransition,
    InvalidInput,
    NotFound,
    NotPermitted,
    Unprocessable,
)

EligibilityError = DomainError
InvalidRequest = InvalidInput

__all__ = [
    "Conflict", "EligibilityError", "FourEyesViolation", "IllegalTransition", "InvalidRequest",
    "InvalidRuleSet", "NotEligible", "NotFound", "NotPermitted", "OpenMarginCalls",
]


class InvalidRuleSet(InvalidInput, code="invalid_rule_set"):
    """Thresholds that break a regulatory floor or are not well formed (every problem listed)."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(errors=[(e["field"], self.code, e["message"]) for e in errors])


class NotEligible(Unprocessable, code="not_eligible"):
    """Approval refused: the evaluation at approval time fails one or more rules."""

    @property
    def errors(self) -> list[dict[str, str]]:
        """One entry per failed rule (``rules.opening_equity``) when the evaluation is attached,
        so an API caller sees which rules failed, each in its own words."""
        rules = self.details.get("rules") if isinstance(self.details, dict) else None
        failed = [rule for rule in rules or () if not rule.get("passed")]
        if not failed:
            return super().errors
        return [{"field": f"rules.{rule['rule']}", "code": self.code, "message": rule["sentence"]}
                for rule in failed]


class OpenMarginCalls(Unprocessable, code="open_margin_call"):
    """Approval refused: the account has an unmet margin call or an active restriction
    (``margin.calls``). Portfolio margin is no way out of a call: Reg T does not apply to a
    PM account (220.1(b)(3)(i)), so an unmet Reg T call would vanish with the upgrade, and an
    account limited to risk-reducing trades takes on no new leverage."""
