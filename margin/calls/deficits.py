"""What a valuation owes, per call kind (MARGIN_CALLS.md sections 1-4, 6, 7): pure, no database.

The end-of-day run issues and updates calls from these amounts; the sweep reads them to see a
call met by a recovery (and a deficit forming, shown as a warning, never issued intraday).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal("0.00")
CENT = Decimal("0.01")


@dataclass(frozen=True)
class Facts:
    """One account's valuation as the call rules read it."""

    margin_type: str
    equity: Decimal
    requirement: Decimal
    regt_initial: Decimal | None = None
    holds_unlisted_derivatives: bool = False
    health_factor: float | None = None


@dataclass(frozen=True)
class Thresholds:
    """The policy values the rules read (from a ``CallPolicy``)."""

    pm_minimum_equity: Decimal
    pm_minimum_equity_unlisted: Decimal
    house_cushion: Decimal
    health_factor_warn: Decimal
    health_factor_call: Decimal

    @classmethod
    def of(cls, policy) -> Thresholds:
        return cls(**{name: policy.value(name) for name in cls.__dataclass_fields__})


def pm_minimum(facts: Facts, limits: Thresholds) -> Decimal:
    """FINRA 4210(g): $100,000, $5,000,000 for accounts holding unlisted derivatives."""
    return (limits.pm_minimum_equity_unlisted if facts.holds_unlisted_derivatives
            else limits.pm_minimum_equity)


def deficits(facts: Facts, limits: Thresholds) -> dict[str, Decimal]:
    """The amount each kind of call would be for (kinds owing nothing are left out). Reg T is
    trade-date based and judged apart (``reg_t_increase``)."""
    owed: dict[str, Decimal] = {}
    equity, requirement = facts.equity, facts.requirement
    if facts.margin_type == "portfolio_margin":
        if equity < requirement:
            owed["pm_deficiency"] = requirement - equity  # 4210(g)
        minimum = pm_minimum(facts, limits)
        if equity < minimum:
            owed["pm_minimum_equity"] = minimum - equity
    elif facts.margin_type == "reg_t" and equity < requirement:
        owed["maintenance"] = requirement - equity  # 4210(c): requirement - equity
    if limits.house_cushion > 0 and facts.margin_type in ("portfolio_margin", "reg_t"):
        # The house layer above the regulatory requirement (a FINRA sub-amount stays with
        # the maintenance or PM call).
        house = (requirement * (1 + limits.house_cushion)).quantize(CENT)
        if equity < house:
            owed["house"] = house - max(equity, requirement)
    return {kind: amount.quantize(CENT) for kind, amount in owed.items() if amount > 0}


def reg_t_increase(*, deficiency_today: Decimal, deficiency_before: Decimal,
                   traded: bool) -> Decimal:
    """Reg T 220.4(c)(1): the deficiency the day's transactions created or increased, not the
    account's whole deficiency; nothing when the account did not trade that day."""
    if not traded:
        return ZERO
    return max(deficiency_today - max(deficiency_before, ZERO), ZERO).quantize(CENT)


def warnings(facts: Facts, limits: Thresholds, open_kinds: set[str]) -> list[dict[str, str]]:
    """What the desk and the client see between closes: a deficit forming that no call covers
    yet (issued, if it stands, at the close), and a health factor inside the warning band."""
    shown = [{"kind": kind, "amount": str(amount),
              "message": f"{kind.replace('_', ' ')} deficit of ${amount:,} forming: a call is "
                         "issued at the close if it stands"}
             for kind, amount in sorted(deficits(facts, limits).items())
             if kind not in open_kinds]
    hf = facts.health_factor
    if hf is not None and Decimal(str(hf)) <= limits.health_factor_warn:
        band = "call" if Decimal(str(hf)) <= limits.health_factor_call else "warn"
        shown.append({"kind": "health_factor", "amount": f"{hf:.4f}",
                      "message": f"health factor {hf:.2f} is in the {band} band "
                                 f"(warn at {limits.health_factor_warn})"})
    return shown


# Collateral (health-factor) calls: intraday by nature (rule book section 7 [X]) -------------

@dataclass(frozen=True)
class Collateral:
    """One valuation's collateral facts as the sweep hands them over (no query): the health
    factor (Aave style: collateral at its liquidation thresholds over debt), the debt it is
    measured against, the account's equity and cash, and the history snapshot kept (None:
    not kept)."""

    health_factor: Decimal | None
    debt: Decimal
    equity: Decimal
    cash: Decimal
    snapshot_id: int | None = None


def in_call_band(health_factor, limits: Thresholds) -> bool:
    return health_factor is not None and Decimal(str(health_factor)) <= limits.health_factor_call


def collateral_owed(facts: Collateral, limits: Thresholds) -> Decimal:
    """What a collateral call asks for: the collateral (at a liquidation threshold of 1, cash)
    that lifts the health factor back to the warning level, debt x (warn - HF); nothing out of
    the call band. HF = weighted collateral / debt, so weighted + x = warn x debt."""
    if not in_call_band(facts.health_factor, limits):
        return ZERO
    gap = limits.health_factor_warn - Decimal(str(facts.health_factor))
    return max(facts.debt * gap, ZERO).quantize(CENT)


def moved(before: Decimal, after: Decimal, *, relative: Decimal, floor: Decimal) -> bool:
    """An amount moved enough to be a decision: more than ``relative`` of it and ``floor``."""
    move = abs(after - before)
    return move > relative * abs(before) and move >= floor


@dataclass(frozen=True)
class CollateralStep:
    """What a valuation does to an account's collateral call: ``issue`` (``amount``),
    ``update`` (the open call's new ``amount``), ``recover`` (cancel it: market recovery)."""

    action: str
    amount: Decimal = ZERO


def collateral_credit(linked: Decimal, cash: Decimal) -> Decimal:
    """Cash deposited to meet earlier collateral calls, while it stays in the account: the
    engine's health factor counts tokens, not cash, so without this a call met by a deposit
    would be asked again at the next valuation. Withdrawn, it no longer counts."""
    return max(min(linked, cash), ZERO)


def collateral_step(facts: Collateral, limits: Thresholds, *, open_amount: Decimal | None,
                    credit: Decimal = ZERO, relative: Decimal = Decimal("0.05"),
                    floor: Decimal = Decimal("100")) -> CollateralStep | None:
    """The one decision, shared by the sweep's history test (``hooks``) and the call run
    (``issuance``). ``open_amount``: the open collateral call's amount (None: none open);
    ``credit``: ``collateral_credit`` of the calls before it. An open call's amount follows
    the health factor when it moves by more than the snapshot threshold (a tick of cents is
    no decision); out of the call band it is cancelled as a market recovery."""
    owed = collateral_owed(facts, limits)
    if open_amount is not None:
        if not owed:
            return CollateralStep("recover")
        amount = (owed - credit).quantize(CENT)
        if amount > 0 and moved(open_amount, amount, relative=relative, floor=floor):
            return CollateralStep("update", amount)
        return None
    amount = (owed - credit).quantize(CENT)
    if amount <= 0 or (credit > 0 and amount < floor):
        return None
    return CollateralStep("issue", amount)
