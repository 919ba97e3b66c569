"""What a portfolio-margin rule set may say: regulatory floors, house defaults, validation.

The numbers a firm chooses live in `RuleSet` rows (versioned, per firm). The numbers no firm may
undercut live here, each with the rule it comes from:

- FINRA Rule 4210(g) / Cboe Options Rule 10.4 (portfolio margin): a customer keeps at least
  $100,000 of equity in a portfolio-margin account; a customer holding unlisted derivatives keeps
  at least $5,000,000; only customers approved for uncovered short options (FINRA Rule 2360,
  level 4 here) may use a portfolio-margin account; the PM risk disclosure is furnished and a
  signed acknowledgement obtained on or before the initial transaction.

What keeps an account on portfolio margin once it is there (the maintenance minimum and the
deficiency's notice, restriction and downgrade days) is call policy (``margin.calls.policy``):
the PM minimum-equity deficiency is a margin call kind. A rule set decides applications.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

# Regulatory floors (FINRA 4210(g); Cboe Options Rule 10.4).
REGULATORY_MINIMUM_EQUITY = Decimal("100000.00")
REGULATORY_UNLISTED_DERIVATIVES_EQUITY = Decimal("5000000.00")
UNCOVERED_OPTIONS_LEVEL = 4  # FINRA Rule 2360 approval to write uncovered options

PM_DISCLOSURE_DOCUMENT = "portfolio_margin"  # accounts.RiskDisclosure.Document.PORTFOLIO_MARGIN

REGISTRATIONS = ("individual", "joint", "entity", "retirement")
RETIREMENT = "retirement"
# Margin types an account may convert *from*. A cash account never qualifies: portfolio margin is
# a margin methodology and needs a margin agreement first (FINRA 4210(g)); an account already on
# portfolio margin has nothing to apply for.
CONVERTIBLE_MARGIN_TYPES = ("reg_t",)
NEVER_ALLOWED_MARGIN_TYPES = ("cash", "portfolio_margin")

# House defaults (version 1 of every firm's rule set).
DEFAULTS: dict[str, Any] = {
    "opening_equity_minimum": Decimal("125000.00"),
    "unlisted_derivatives_equity_minimum": Decimal("5000000.00"),
    "min_options_approval_level": UNCOVERED_OPTIONS_LEVEL,
    "min_years_options_experience": 2,
    "min_annual_income": Decimal("100000.00"),
    "min_net_worth": Decimal("500000.00"),
    "min_liquid_net_worth": Decimal("250000.00"),
    "allowed_registrations": ["individual", "joint", "entity"],  # no IRAs unless the firm says so
    "allowed_margin_types": ["reg_t"],
    "application_valid_days": 20,
}
THRESHOLD_FIELDS: tuple[str, ...] = tuple(DEFAULTS)

MONEY_FIELDS = (
    "opening_equity_minimum", "unlisted_derivatives_equity_minimum",
    "min_annual_income", "min_net_worth", "min_liquid_net_worth",
)


def _money(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (ArithmeticError, ValueError, TypeError):
        return None
    return number if number.is_finite() else None


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return None


def normalise_thresholds(values: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """Coerce and check a full set of thresholds. Returns (values, errors naming each field)."""
    errors: list[dict[str, str]] = []

    def fail(field: str, message: str) -> None:
        errors.append({"field": field, "message": message})

    clean = _coerce(values, fail)
    _check_floors(clean, fail)
    _check_timeline(clean, fail)
    return clean, errors


WHOLE_FIELDS = ("min_options_approval_level", "min_years_options_experience",
                "application_valid_days")
LIST_FIELDS = (("allowed_registrations", REGISTRATIONS),
               ("allowed_margin_types", CONVERTIBLE_MARGIN_TYPES + NEVER_ALLOWED_MARGIN_TYPES))


def _coerce(values: dict[str, Any], fail) -> dict[str, Any]:
    """The form of each threshold: amounts, whole numbers, lists of known names."""
    clean: dict[str, Any] = {}
    for field in sorted(set(values) - set(THRESHOLD_FIELDS)):
        fail(field, "not a rule-set threshold")
    for field in MONEY_FIELDS:
        number = _money(values.get(field))
        if number is None or number < 0:
            fail(field, f"{values.get(field)!r} is not a non-negative amount")
        else:
            clean[field] = number.quantize(Decimal("0.01"))
    for field in WHOLE_FIELDS:
        number = _whole(values.get(field))
        if number is None or number < 0:
            fail(field, f"{values.get(field)!r} is not a whole number of at least 0")
        else:
            clean[field] = number
    for field, choices in LIST_FIELDS:
        listed = values.get(field)
        if not isinstance(listed, list | tuple) or not all(isinstance(v, str) for v in listed):
            fail(field, "a list of names")
            continue
        bad = sorted(set(listed) - set(choices))
        if bad:
            fail(field, f"unknown {', '.join(bad)}; choose from {', '.join(choices)}")
            continue
        clean[field] = sorted(set(listed))
    return clean


def _check_floors(clean: dict[str, Any], fail) -> None:
    """The regulatory floors (FINRA 4210(g); Cboe Options Rule 10.4): no firm sets them lower."""
    for field in ("opening_equity_minimum",):
        if field in clean and clean[field] < REGULATORY_MINIMUM_EQUITY:
            fail(field, f"{clean[field]:,} is below the regulatory floor of "
                        f"${REGULATORY_MINIMUM_EQUITY:,} (FINRA 4210(g)); a firm may only set it higher")
    field = "unlisted_derivatives_equity_minimum"
    if field in clean and clean[field] < REGULATORY_UNLISTED_DERIVATIVES_EQUITY:
        fail(field, f"{clean[field]:,} is below the regulatory ${REGULATORY_UNLISTED_DERIVATIVES_EQUITY:,} "
                    "for customers holding unlisted derivatives (FINRA 4210(g))")
    level = clean.get("min_options_approval_level")
    if level is not None and level != UNCOVERED_OPTIONS_LEVEL:
        fail("min_options_approval_level", f"must be {UNCOVERED_OPTIONS_LEVEL}: portfolio margin "
             "needs approval for uncovered options (FINRA 4210(g), Rule 2360)")
    if "allowed_margin_types" in clean:
        refused = sorted(set(clean["allowed_margin_types"]) & set(NEVER_ALLOWED_MARGIN_TYPES))
        if refused:
            fail("allowed_margin_types", f"{', '.join(refused)} accounts can never convert to "
                 "portfolio margin (a cash account needs a margin agreement first)")
        elif not clean["allowed_margin_types"]:
            fail("allowed_margin_types", "at least one margin type must be allowed")
    if "allowed_registrations" in clean and not clean["allowed_registrations"]:
        fail("allowed_registrations", "at least one registration must be allowed")


def _check_timeline(clean: dict[str, Any], fail) -> None:
    """How long an application stays open, in business days."""
    valid = clean.get("application_valid_days")
    if valid is not None and not 1 <= valid <= 250:
        fail("application_valid_days", "between 1 and 250 business days")
