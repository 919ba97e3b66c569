"""How the approvals pages say things: people by name, an evaluation rule by rule in words, a
proposed change as a table of old and new values. Pure presentation: nothing here decides.

The evaluation's rules and their sentences are eligibility's (``eligibility.evaluation``); the
labels and the formatting of the required and actual values are the page's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from eligibility import rules as eligibility_rules
from eligibility.models import RuleSet
from margin.engine.parameters import load_parameter_mapping, overlay
from margin.models import RiskParameterSet
from web.templatetags.money import MINUS, format_money


def person(user) -> str:
    """A person as the desk names them: their full name and login, or the login alone."""
    if user is None:
        return "the system"
    full = user.get_full_name().strip()
    return f"{full} ({user.username})" if full else user.username


# An evaluation, rule by rule -------------------------------------------------------------------

#: rule name -> (label, how its required and actual values read)
RULE_WORDS: dict[str, tuple[str, str]] = {
    "margin_type": ("Margin type", "text"),
    "registration": ("Registration", "text"),
    "account_status": ("Account status", "text"),
    "options_approval_level": ("Options approval level", "level"),
    "options_experience_years": ("Options experience", "years"),
    "annual_income": ("Annual income", "money"),
    "net_worth": ("Net worth", "money"),
    "liquid_net_worth": ("Liquid net worth", "money"),
    "pm_disclosure_delivered": ("PM risk disclosure delivered", "date"),
    "pm_disclosure_acknowledged": ("PM risk acknowledgement signed", "date"),
    "opening_equity": ("Equity to open portfolio margin", "money"),
    "unlisted_derivatives_equity": ("Equity with unlisted derivatives", "money"),
}
_CHOICE_WORDS = {"reg_t": "Reg T margin", "portfolio_margin": "portfolio margin",
                 "cash": "cash", "individual": "individual", "joint": "joint",
                 "entity": "entity", "retirement": "retirement (IRA)", "open": "open"}


def _money_or_text(value: str) -> str:
    try:
        return format_money(Decimal(value))
    except (InvalidOperation, ValueError):
        return value  # "none held"


def _value(value: str, how: str, *, required: bool) -> str:
    if value in ("", None):
        return "not yet" if how == "date" else "-"
    if how == "money":
        amount = _money_or_text(value)
        return f"at least {amount}" if required and amount.startswith("$") else amount
    if how == "years":
        return f"{'at least ' if required else ''}{value} years"
    if how == "level":
        return f"level {value}"
    if how == "date":
        moment = parse_datetime(value)
        if moment is None:  # the requirement: "delivered", "signed"
            return value
        return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}"
    words = [_CHOICE_WORDS.get(v.strip(), v.strip()) for v in value.split(",")]
    return (" or ".join(words) if required else ", ".join(words))


@dataclass(frozen=True)
class RuleLine:
    label: str
    required: str
    actual: str
    passed: bool
    sentence: str
    source: str


def rule_lines(results: dict[str, Any]) -> list[RuleLine]:
    """An evaluation's stored results (``Evaluation.results``) as lines a person reads."""
    lines = []
    for outcome in results.get("rules", []):
        label, how = RULE_WORDS.get(outcome["rule"], (outcome["rule"].replace("_", " "), "text"))
        lines.append(RuleLine(label=label,
                              required=_value(outcome["threshold"], how, required=True),
                              actual=_value(outcome["seen"], how, required=False),
                              passed=bool(outcome["passed"]), sentence=outcome["sentence"],
                              source=outcome.get("source", "")))
    return lines


# A proposed change as old and new values -------------------------------------------------------

@dataclass(frozen=True)
class DiffLine:
    parameter: str
    old: str
    new: str
    change: str


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value))
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _signed(amount: Decimal, money: bool) -> str:
    if money:
        text = format_money(abs(amount))
    else:
        text = f"{abs(amount).normalize():,f}"
    return f"{'+' if amount > 0 else MINUS}{text}"


def _change(old: Any, new: Any, *, money: bool = False) -> str:
    """How a value moved: the difference and, for numbers, the relative move."""
    before, after = _number(old), _number(new)
    if before is not None and after is not None:
        difference = after - before
        if difference == 0:
            return "no change"
        if not before:
            return _signed(difference, money)
        moved = difference / before * 100
        return f"{_signed(difference, money)} ({'+' if moved > 0 else MINUS}{abs(moved):.1f} %)"
    if isinstance(old, list) and isinstance(new, list):
        added = [str(v) for v in new if v not in old]
        removed = [str(v) for v in old if v not in new]
        parts = ([f"adds {', '.join(added)}"] if added else []) + \
                ([f"removes {', '.join(removed)}"] if removed else [])
        return "; ".join(parts) or "reordered"
    if old is None:
        return "new"
    if new is None:
        return "removed"
    return "changed"


def _shown(value: Any, *, money: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_CHOICE_WORDS.get(str(v), str(v)) for v in value) or "none"
    number = _number(value)
    if number is not None:
        return format_money(number) if money else f"{number.normalize():,f}"
    return str(value)


def rule_set_diff(proposal: RuleSet) -> tuple[list[DiffLine], RuleSet | None]:
    """A proposed rule set against the version it was drafted on: the thresholds that move."""
    base = proposal.based_on
    old = base.thresholds() if base is not None else dict(eligibility_rules.DEFAULTS)
    new = proposal.thresholds()
    lines = []
    for name in eligibility_rules.THRESHOLD_FIELDS:
        money = name in eligibility_rules.MONEY_FIELDS
        before, after = old.get(name), new.get(name)
        if isinstance(before, list):
            before, after = sorted(before), sorted(after or [])
        elif _number(before) is not None and _number(after) is not None:
            if _number(before) == _number(after):
                continue
        if before == after:
            continue
        label = RuleSet._meta.get_field(name).verbose_name
        lines.append(DiffLine(parameter=label[:1].upper() + label[1:],
                              old=_shown(before, money=money), new=_shown(after, money=money),
                              change=_change(before, after, money=money)))
    return lines, base


def _flatten(value: Any, path: tuple[str, ...], into: dict[tuple[str, ...], Any]) -> None:
    """Leaves of a parameter mapping by path; a table of tiers ([cap, haircut] rows) is read
    row by row, so one tier's move is one line."""
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, (*path, str(key)), into)
    elif (isinstance(value, list) and value
          and all(isinstance(row, list) and len(row) == 2 for row in value)):
        for n, (cap, rate) in enumerate(value, start=1):
            into[(*path, f"tier {n} size cap")] = "open" if cap is None else cap
            into[(*path, f"tier {n} rate")] = rate
    else:
        into[path] = value


def _path_words(path: tuple[str, ...]) -> str:
    words = {"defi": "DeFi", "var": "VaR", "span": "SPAN"}
    text = " › ".join(words.get(part, part.replace("_", " ")) for part in path)
    return text[:1].upper() + text[1:]


def _effective(parameter_set: RiskParameterSet | None, base: str) -> dict[str, Any]:
    mapping = load_parameter_mapping(parameter_set.base if parameter_set else base)
    return overlay(mapping, parameter_set.overrides if parameter_set else {})


def parameter_diff(proposal: RiskParameterSet
                   ) -> tuple[list[DiffLine], RiskParameterSet | None]:
    """A proposed parameter version against the version it was drafted on (the platform
    default when the firm had none): every value the firm's snapshots would read differently."""
    drafted_on = None
    if proposal.drafted_on:
        drafted_on = RiskParameterSet.objects.filter(firm=proposal.firm,
                                                     version=proposal.drafted_on).first()
    old_leaves: dict[tuple[str, ...], Any] = {}
    new_leaves: dict[tuple[str, ...], Any] = {}
    _flatten(_effective(drafted_on, proposal.base), (), old_leaves)
    _flatten(_effective(proposal, proposal.base), (), new_leaves)
    lines = []
    for path in sorted(set(old_leaves) | set(new_leaves)):
        before, after = old_leaves.get(path), new_leaves.get(path)
        if before == after:
            continue
        lines.append(DiffLine(parameter=_path_words(path), old=_shown(before),
                              new=_shown(after), change=_change(before, after)))
    return lines, drafted_on


def when(moment: datetime | None) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}" if moment else "-"
