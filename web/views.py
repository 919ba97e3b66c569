"""The client portal: a client's accounts, their current margin, why, calls, history, what-if.

Pages read the current margin row (``AccountMargin``) and the snapshots; they never value on
load. "Why" renders the calculator's response behind the latest snapshot from its recorded
inputs (``margin.reproduce.explanation``: nothing written); the what-if runs the pre-trade
check (``margin.pretrade.check``: nothing written). A client sees the accounts django-guardian
grants them (view_account); another firm's or another client's account is a 404.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from guardian.shortcuts import get_objects_for_user

from accounts.models import Account, Instrument
from brokerage.scope import current_firm_or_none
from margin.calls.models import CallNotice, MarginCall, Restriction
from margin.explain import explained_result
from margin.market_history import SYNTHETIC_FLAG
from margin.models import AccountMargin, MarginSnapshot, PriceObservation
from margin.pretrade import REG_T_STOCK_RATE, Order, Unvalued, check
from margin.snapshots import latest_snapshot

from .charts import history_chart, move_in_words, risk_array_chart

HISTORY_POINTS = 250


def _visible_accounts(user) -> QuerySet[Account]:
    if current_firm_or_none() is None:
        raise Http404("no firm")
    return get_objects_for_user(user, "accounts.view_account",
                                klass=Account.objects.select_related("client"),
                                accept_global_perms=False, with_superuser=False)


def _account(request: HttpRequest, number: str) -> Account:
    account = _visible_accounts(request.user).filter(number=number).first()
    if account is None:
        raise Http404("no such account")
    return account


def _with_latest_snapshots(accounts: QuerySet[Account]
                           ) -> list[tuple[Account, MarginSnapshot | None]]:
    """Each account with its latest snapshot (`latest_snapshot`'s order), in two queries
    whatever the number of accounts."""
    newest = MarginSnapshot.objects.filter(account=OuterRef("pk")).order_by(
        "-computed_at", "-id").values("id")[:1]
    listed = list(accounts.annotate(latest_snapshot_id=Subquery(newest)).order_by("number"))
    snapshots = MarginSnapshot.objects.in_bulk(
        [a.latest_snapshot_id for a in listed if a.latest_snapshot_id is not None])
    return [(a, snapshots.get(a.latest_snapshot_id)) for a in listed]


def _open_calls(account: Account) -> list[MarginCall]:
    return list(MarginCall.objects.filter(account=account, status__in=MarginCall.OPEN_STATES)
                .order_by("due_date", "id"))


def _page(request, template: str, account: Account, tab: str, **context) -> HttpResponse:
    return render(request, template, {"account": account, "tab": tab, **context})


@login_required
def portal_home(request: HttpRequest) -> HttpResponse:
    rows = _with_latest_snapshots(_visible_accounts(request.user))
    return render(request, "portal/home.html", {"rows": rows})


def _positions(snapshot: MarginSnapshot | None) -> tuple[list[dict], list[PriceObservation]]:
    """The positions as the snapshot valued them, at the prices it used (stored rows only)."""
    if snapshot is None or not snapshot.positions:
        return [], []
    instruments = Instrument.objects.in_bulk([row[0] for row in snapshot.positions])
    prices = PriceObservation.objects.in_bulk([int(i) for i in snapshot.price_ids.values()])
    price_of = {int(iid): prices.get(int(pid)) for iid, pid in snapshot.price_ids.items()}
    rows = []
    for iid, quantity, _cost in snapshot.positions:
        instrument = instruments.get(iid)
        observed = price_of.get(iid)
        quantity = Decimal(str(quantity))
        price = observed.price if observed else None
        rows.append({"instrument": instrument, "quantity": quantity, "price": price,
                     "market_value": quantity * price * instrument.multiplier
                     if price is not None and instrument else None})
    rows.sort(key=lambda r: r["instrument"].symbol if r["instrument"] else "")
    return rows, [p for p in prices.values()]


def _buying_power(account: Account, excess: Decimal | None) -> Decimal | None:
    """Buying power in marginable stock (margin.pretrade): Reg T max(excess, 0) / 50 %, a cash
    account max(excess, 0); portfolio margin depends on the order (the what-if shows it)."""
    if excess is None or account.margin_type == Account.MarginType.PORTFOLIO_MARGIN:
        return None
    rate = REG_T_STOCK_RATE if account.margin_type == Account.MarginType.REG_T else Decimal(1)
    return max(excess, Decimal(0)) / rate


def account_overview(account: Account) -> dict:
    """The overview's figures as the client reads them (the portal's account page; the desk's
    360 view shows the same context): the current margin row, else the latest snapshot."""
    current = AccountMargin.objects.filter(account=account).select_related("snapshot").first()
    snapshot = (current.snapshot if current and current.snapshot_id else None) \
        or latest_snapshot(account)
    positions, prices = _positions(snapshot)
    reg_t = snapshot.regt_maintenance if snapshot else None
    pm_requirement = snapshot.requirement if snapshot and account.margin_type == \
        Account.MarginType.PORTFOLIO_MARGIN else (snapshot.pm_requirement if snapshot else None)
    requirement = current.requirement if current and current.requirement is not None else (
        snapshot.requirement if snapshot else None)
    excess = current.excess if current and current.excess is not None else (
        snapshot.excess if snapshot else None)
    context = {
        "current": current, "snapshot": snapshot, "positions": positions,
        "equity": current.equity if current and current.equity is not None else (
            snapshot.equity if snapshot else None),
        "requirement": requirement, "excess": excess, "reg_t": reg_t,
        # Portfolio margin beside Reg T: what PM needs (the account's requirement, or for a
        # Reg T account the PM figure the valuation computed beside it) and what it saves.
        "pm_requirement": pm_requirement,
        "saving": reg_t - pm_requirement if reg_t is not None and pm_requirement is not None
        else None,
        "buying_power": _buying_power(account, excess),
        "open_calls": _open_calls(account),
        "synthetic": bool(snapshot and snapshot.history
                          and SYNTHETIC_FLAG in (snapshot.history.get("flags") or ())),
        "price_sources": sorted({p.get_source_display() for p in prices}),
        "prices_as_of": max((p.observed_at for p in prices), default=None),
    }
    return context


@login_required
def portal_account(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    return _page(request, "portal/account.html", account, "overview",
                 **account_overview(account))


def _synthetic(result: dict) -> bool:
    return SYNTHETIC_FLAG in (result.get("warnings") or [])


@login_required
def portal_why(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    snapshot = latest_snapshot(account)
    result = explained_result(snapshot) if snapshot else {}
    pm = result.get("portfolio_margin") or {}
    charts = [risk_array_chart(g["class_group"], g["points"], g["pnl"])
              for g in pm.get("class_groups", [])]
    components = pm.get("house_components") or {}
    setter = max(components.items(), key=lambda kv: kv[1]) if components else None
    driver = pm.get("driver") or {}
    greeks: dict[str, dict[str, float]] = {}
    for row in result.get("positions") or []:
        if row.get("delta") is None:
            continue
        underlying = str(row["id"]).split()[0]
        totals = greeks.setdefault(underlying, {"delta": 0.0, "gamma": 0.0, "vega": 0.0,
                                                "theta": 0.0})
        for name in totals:
            totals[name] += float(row.get(name) or 0.0)
    context = {
        "snapshot": snapshot, "result": result, "pm": pm, "charts": charts,
        "house_setter": setter,
        "house_sets_requirement": bool(pm) and pm.get("house_requirement", 0)
        > pm.get("regulatory_requirement", 0),
        "driver_words": move_in_words(driver["product_group"], driver["point"])
        if driver else "",
        "greeks": sorted(greeks.items()), "positions": result.get("positions") or [],
        "synthetic": _synthetic(result),
    }
    return _page(request, "portal/why.html", account, "why", **context)


@login_required
def portal_calls(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    calls = list(MarginCall.objects.filter(account=account).order_by("-as_of", "-id"))
    context = {
        "open_calls": [c for c in calls if c.status in MarginCall.OPEN_STATES],
        "past_calls": [c for c in calls if c.status not in MarginCall.OPEN_STATES],
        "restrictions": list(Restriction.objects.filter(account=account,
                                                        state=Restriction.State.ACTIVE)
                             .order_by("starts_on", "id")),
        "notices": list(CallNotice.objects.filter(call__account=account)
                        .select_related("call").order_by("-created_at", "-id")),
    }
    return _page(request, "portal/calls.html", account, "calls", **context)


@login_required
def portal_history(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    newest = list(MarginSnapshot.objects.filter(account=account)
                  .order_by("-computed_at", "-id")
                  .values_list("computed_at", "equity", "requirement")[:HISTORY_POINTS])
    chart = history_chart(list(reversed(newest)))
    return _page(request, "portal/history.html", account, "history", chart=chart)


def _what_if_orders(account: Account, data) -> tuple[list[Order], list[str]]:
    """The form's orders: a trade (symbol, side, quantity) or closing a held position."""
    errors: list[str] = []
    close = (data.get("close") or "").strip()
    if close:
        position = account.positions.select_related("instrument").filter(
            instrument__symbol=close).first()
        if position is None or position.quantity == 0:
            return [], [f"close: the account holds no {close}"]
        side = "sell" if position.quantity > 0 else "buy"
        return [Order(instrument=position.instrument, side=side,
                      quantity=abs(position.quantity))], []
    symbol = (data.get("symbol") or "").strip()
    side = data.get("side")
    instrument = Instrument.objects.filter(symbol=symbol).first() if symbol else None
    if instrument is None:
        errors.append(f"symbol: no instrument {symbol!r}" if symbol else
                      "symbol: name an instrument, or choose a position to close")
    if side not in ("buy", "sell"):
        errors.append("side: buy or sell")
    try:
        quantity = Decimal(data.get("quantity") or "")
        if not quantity.is_finite() or quantity <= 0:
            raise InvalidOperation
    except InvalidOperation:
        errors.append("quantity: a positive number")
        quantity = None
    if errors:
        return [], errors
    return [Order(instrument=instrument, side=side, quantity=quantity)], []


@login_required
def portal_what_if(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    held = list(account.positions.select_related("instrument").exclude(quantity=0)
                .order_by("instrument__symbol"))
    outcome, errors = None, []
    if request.GET:
        orders, errors = _what_if_orders(account, request.GET)
        if orders:
            try:
                outcome = check(account=account, orders=orders)
            except Unvalued as exc:
                errors = [f"the book cannot be valued now: {exc}"]
    return _page(request, "portal/what_if.html", account, "what_if", held=held,
                 outcome=outcome, errors=errors, form=request.GET)
