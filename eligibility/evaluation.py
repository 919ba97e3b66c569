"""Judging an account against a rule set: a pure function of facts, every rule reported.

`evaluate(client=, account=, equity=, rule_set=)` reads attributes only (no database): the facts
are frozen dataclasses built by `facts_for(account)`, the equity reading comes from
`equity.read_equity` (margin's one definition: the latest snapshot, else margin's valuation of
the book now), and the rule set
is a `RuleSet` row or anything with the same attributes. The result names every rule with
pass/fail, the value seen, the threshold and a sentence a client can read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.db.models import F

from accounts.models import Account, Client, RiskDisclosure

from .equity import EquityReading, read_equity
from .rules import PM_DISCLOSURE_DOCUMENT, RETIREMENT

OPENING = "opening"  # an application: the opening minimum applies


@dataclass(frozen=True)
class ClientFacts:
    options_approval_level: int
    years_trading_options: int
    annual_income: Decimal
    net_worth: Decimal
    liquid_net_worth: Decimal
    holds_unlisted_derivatives: bool
    pm_disclosure_delivered_at: datetime | None
    pm_disclosure_acknowledged_at: datetime | None

    def fingerprint(self) -> dict[str, str]:
        """What a reviewer saw; a later difference makes an application under review stale."""
        return {name: "" if value is None else str(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class AccountFacts:
    number: str
    registration: str
    margin_type: str
    status: str


class RuleSetLike(Protocol):
    version: int
    opening_equity_minimum: Decimal
    unlisted_derivatives_equity_minimum: Decimal
    min_options_approval_level: int
    min_years_options_experience: int
    min_annual_income: Decimal
    min_net_worth: Decimal
    min_liquid_net_worth: Decimal
    allowed_registrations: list[str]
    allowed_margin_types: list[str]


@dataclass(frozen=True)
class RuleOutcome:
    rule: str
    passed: bool
    seen: str
    threshold: str
    sentence: str
    source: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EligibilityResult:
    rule_set_version: int
    purpose: str
    equity: EquityReading
    outcomes: tuple[RuleOutcome, ...]

    @property
    def passed(self) -> bool:
        return all(outcome.passed for outcome in self.outcomes)

    @property
    def failures(self) -> tuple[RuleOutcome, ...]:
        return tuple(outcome for outcome in self.outcomes if not outcome.passed)

    def outcome(self, rule: str) -> RuleOutcome:
        return next(o for o in self.outcomes if o.rule == rule)

    def as_json(self) -> dict[str, Any]:
        return {"rule_set_version": self.rule_set_version, "purpose": self.purpose,
                "passed": self.passed, "equity": self.equity.as_json(),
                "rules": [o.as_json() for o in self.outcomes]}


def _usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


FINRA_PM = "FINRA 4210(g); Cboe Options Rule 10.4"
HOUSE = "house rule set"

Rule = Callable[[ClientFacts, AccountFacts, EquityReading, RuleSetLike, str], RuleOutcome]


def _one_of_allowed(rule: str, seen: str, allowed: list[str], source: str, *, eligible: str,
                    refused: dict[str, str], otherwise: str) -> RuleOutcome:
    """The account's `seen` value must be one the rule set allows; a refusal says why in the
    words of its commonest cases (`refused`, by value), else `otherwise`."""
    ok = seen in allowed
    sentence = eligible if ok else refused.get(seen, otherwise)
    return RuleOutcome(rule, ok, seen, ", ".join(allowed), sentence, source)


MARGIN_TYPE_WORDS = {"reg_t": "Reg T", "cash": "cash", "portfolio_margin": "portfolio"}


def _margin_type(client, account, equity, rules, purpose) -> RuleOutcome:
    return _one_of_allowed(
        "margin_type", account.margin_type, list(rules.allowed_margin_types), FINRA_PM,
        eligible=f"The account is a {MARGIN_TYPE_WORDS.get(account.margin_type, account.margin_type)}"
                 " margin account, which may convert.",
        refused={"cash": "A cash account cannot move to portfolio margin: it needs a margin "
                         "agreement (Reg T) first.",
                 "portfolio_margin": "The account is already on portfolio margin."},
        otherwise=f"Accounts on {account.margin_type} may not convert under this rule set.")


def _registration(client, account, equity, rules, purpose) -> RuleOutcome:
    kind = account.registration.capitalize()
    return _one_of_allowed(
        "registration", account.registration, list(rules.allowed_registrations), HOUSE,
        eligible=f"{kind} accounts are eligible.",
        refused={RETIREMENT: "This firm does not offer portfolio margin on retirement accounts "
                             "(IRAs)."},
        otherwise=f"{kind} accounts are not eligible at this firm.")


def _account_status(client, account, equity, rules, purpose) -> RuleOutcome:
    ok = account.status == "open"
    sentence = ("The account is open." if ok else
                f"The account is {account.status}; only an open account can convert.")
    return RuleOutcome("account_status", ok, account.status, "open", sentence, HOUSE)


def _options_level(client, account, equity, rules, purpose) -> RuleOutcome:
    need = rules.min_options_approval_level
    ok = client.options_approval_level >= need
    sentence = ("The client is approved for uncovered options." if ok else
                f"The client's options approval is level {client.options_approval_level}; "
                f"portfolio margin needs level {need} (uncovered options).")
    return RuleOutcome("options_approval_level", ok, str(client.options_approval_level),
                       str(need), sentence, f"{FINRA_PM}; FINRA Rule 2360")


def _options_experience(client, account, equity, rules, purpose) -> RuleOutcome:
    need = rules.min_years_options_experience
    ok = client.years_trading_options >= need
    sentence = (f"{client.years_trading_options} years of options experience meets the "
                f"{need}-year minimum." if ok else
                f"{client.years_trading_options} years of options experience is below the "
                f"{need}-year minimum.")
    return RuleOutcome("options_experience_years", ok, str(client.years_trading_options),
                       str(need), sentence, HOUSE)


def _financial(rule: str, attribute: str, threshold: str, label: str) -> Rule:
    def check(client, account, equity, rules, purpose) -> RuleOutcome:
        seen: Decimal = getattr(client, attribute)
        need: Decimal = getattr(rules, threshold)
        ok = seen >= need
        verb = "meets" if ok else "is below"
        return RuleOutcome(rule, ok, str(seen), str(need),
                           f"{label} of {_usd(seen)} {verb} the {_usd(need)} minimum.", HOUSE)
    return check


def _disclosure(rule: str, attribute: str, threshold: str, done: str, missing: str,
                source: str) -> Rule:
    """A step of the PM disclosure that must have happened: `done` names its date."""
    def check(client, account, equity, rules, purpose) -> RuleOutcome:
        at: datetime | None = getattr(client, attribute)
        ok = at is not None
        sentence = done.format(at=at) if ok else missing
        return RuleOutcome(rule, ok, at.isoformat() if at else "", threshold, sentence, source)
    return check


_disclosure_delivered = _disclosure(
    "pm_disclosure_delivered", "pm_disclosure_delivered_at", "delivered",
    "The portfolio-margin risk disclosure was delivered on {at:%Y-%m-%d}.",
    "The portfolio-margin risk disclosure has not been delivered.",
    f"{FINRA_PM} (disclosure statement)")
_disclosure_acknowledged = _disclosure(
    "pm_disclosure_acknowledged", "pm_disclosure_acknowledged_at", "signed",
    "The client signed the acknowledgement on {at:%Y-%m-%d}.",
    "The client has not signed the portfolio-margin risk acknowledgement.",
    f"{FINRA_PM} (signed acknowledgement)")


def _equity_rule(rule: str, need: Decimal, label: str, source: str,
                 equity: EquityReading) -> RuleOutcome:
    if not equity.complete:
        return RuleOutcome(rule, False, str(equity.amount), str(need),
                           f"Equity cannot be established: no price for "
                           f"{', '.join(equity.unpriced)}.", source)
    ok = equity.amount >= need
    verb = "meets" if ok else "is below"
    return RuleOutcome(rule, ok, str(equity.amount), str(need),
                       f"Equity of {_usd(equity.amount)} {verb} the {_usd(need)} {label}.", source)


def _minimum_equity(client, account, equity, rules, purpose) -> RuleOutcome:
    return _equity_rule("opening_equity", rules.opening_equity_minimum, "opening minimum",
                        FINRA_PM, equity)


def _unlisted_derivatives(client, account, equity, rules, purpose) -> RuleOutcome:
    need = rules.unlisted_derivatives_equity_minimum
    if not client.holds_unlisted_derivatives:
        return RuleOutcome("unlisted_derivatives_equity", True, "none held", str(need),
                           "The client holds no unlisted derivatives, so the "
                           f"{_usd(need)} minimum does not apply.", FINRA_PM)
    return _equity_rule("unlisted_derivatives_equity", need,
                        "minimum for a client holding unlisted derivatives", FINRA_PM, equity)


RULES: tuple[Rule, ...] = (
    _margin_type,
    _registration,
    _account_status,
    _options_level,
    _options_experience,
    _financial("annual_income", "annual_income", "min_annual_income", "Annual income"),
    _financial("net_worth", "net_worth", "min_net_worth", "Net worth"),
    _financial("liquid_net_worth", "liquid_net_worth", "min_liquid_net_worth",
               "Liquid net worth"),
    _disclosure_delivered,
    _disclosure_acknowledged,
    _minimum_equity,
    _unlisted_derivatives,
)
RULE_NAMES = ("margin_type", "registration", "account_status", "options_approval_level",
              "options_experience_years", "annual_income", "net_worth", "liquid_net_worth",
              "pm_disclosure_delivered", "pm_disclosure_acknowledged", "opening_equity",
              "unlisted_derivatives_equity")


def evaluate(*, client: ClientFacts, account: AccountFacts, equity: EquityReading,
             rule_set: RuleSetLike, purpose: str = OPENING) -> EligibilityResult:
    """Every rule, in a fixed order, judged on the facts given. No database access."""
    if purpose != OPENING:
        # The maintenance minimum is call policy now (margin.calls): a rule set judges
        # applications only.
        raise ValueError(f"purpose is {OPENING!r}")
    outcomes = tuple(rule(client, account, equity, rule_set, purpose) for rule in RULES)
    return EligibilityResult(rule_set.version, purpose, equity, outcomes)


def required_equity(*, client: ClientFacts, rule_set: RuleSetLike, purpose: str) -> Decimal:
    """The binding equity minimum: $5,000,000 with unlisted derivatives (FINRA 4210(g))."""
    if purpose != OPENING:
        raise ValueError(f"purpose is {OPENING!r}")
    base = rule_set.opening_equity_minimum
    if client.holds_unlisted_derivatives:
        return max(base, rule_set.unlisted_derivatives_equity_minimum)
    return base


# Facts from the database (the impure edge).

def client_facts(client: Client) -> ClientFacts:
    # A signed copy counts, whichever version; otherwise the latest delivered one.
    disclosure = (RiskDisclosure.objects.filter(client=client, document=PM_DISCLOSURE_DOCUMENT)
                  .order_by(F("acknowledged_at").desc(nulls_last=True), "-delivered_at", "-pk")
                  .first())
    return ClientFacts(
        options_approval_level=client.options_approval_level,
        years_trading_options=client.years_trading_options,
        annual_income=client.annual_income,
        net_worth=client.net_worth,
        liquid_net_worth=client.liquid_net_worth,
        holds_unlisted_derivatives=client.holds_unlisted_derivatives,
        pm_disclosure_delivered_at=disclosure.delivered_at if disclosure else None,
        pm_disclosure_acknowledged_at=disclosure.acknowledged_at if disclosure else None,
    )


def account_facts(account: Account) -> AccountFacts:
    return AccountFacts(number=account.number, registration=account.registration,
                        margin_type=account.margin_type, status=account.status)


@dataclass(frozen=True)
class Facts:
    client: ClientFacts
    account: AccountFacts
    equity: EquityReading


def facts_for(account: Account) -> Facts:
    return Facts(client_facts(account.client), account_facts(account), read_equity(account))


def evaluate_account(account: Account, rule_set: RuleSetLike, *,
                     purpose: str = OPENING) -> tuple[EligibilityResult, Facts]:
    facts = facts_for(account)
    return evaluate(client=facts.client, account=facts.account, equity=facts.equity,
                    rule_set=rule_set, purpose=purpose), facts
