"""The client portal: a client's accounts, their current margin, why, calls, history, what-if.

Pages read the current margin row (``AccountMargin``) and the snapshots; they never value on
load. "Why" renders the calculator's response behind the latest snapshot from its recorded
inputs (``margin.reproduce.explanation``: nothing written); the what-if runs the pre-trade
check (``margin.pretrade.check``: nothing written). A client sees the accounts django-guardian
grants them (view_account); another firm's or another client's account is a 404.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from guardian.shortcuts import get_objects_for_user

from accounts.models import Account, Instrument, RiskDisclosure
from accounts.services import acknowledge_disclosure, deliver_disclosure
from brokerage.errors import DomainError
from brokerage.scope import current_firm_or_none
from eligibility.evaluation import evaluate_account
from eligibility.models import Application, Evaluation, RuleSet
from eligibility.rules import DEFAULTS, PM_DISCLOSURE_DOCUMENT
from eligibility.services import create_application
from margin.calls.models import CallNotice, MarginCall, Restriction
from margin.contribution import contributions, contributions_under
from margin.distance import DistanceToCall, distance_to_call
from margin.engine.distance import PRESETS
from margin.explain import explained_result
from margin.figures import market_ids
from margin.market_history import SYNTHETIC_FLAG
from margin.models import AccountMargin, MarginSnapshot, PriceObservation
from margin.pretrade import REG_T_STOCK_RATE, Order, Unvalued, check
from margin.snapshots import latest_snapshot

from .charts import excess_chart, history_chart, move_in_words, move_percent, risk_array_chart

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
    price_ids, _ = market_ids(snapshot, instruments)  # its own, or its chunk's state's
    prices = PriceObservation.objects.in_bulk([int(i) for i in price_ids.values()])
    price_of = {int(iid): prices.get(int(pid)) for iid, pid in price_ids.items()}
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
    contribution_of, contribution_problem = {}, ""
    try:
        _, contribution_of = contributions(account)
    except Unvalued as exc:
        contribution_problem = f"Each position's contribution cannot be valued now: {exc}"
    for row in positions:
        found = contribution_of.get(row["instrument"].pk) if row["instrument"] else None
        row["contribution"] = found.change if found else None
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
        "contribution_problem": contribution_problem,
    }
    distance, context["distance_problem"] = _distance_or_error(account)
    context["distance_sentences"] = distance_sentences(distance)
    context["pm_case"] = _pm_case(account, snapshot, positions, distance)
    return context


@login_required
def portal_account(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    return _page(request, "portal/account.html", account, "overview",
                 **account_overview(account))


def _pm_case(account: Account, snapshot: MarginSnapshot | None, positions: list[dict],
             distance: DistanceToCall | None) -> dict | None:
    """The overview's answer for a Reg T client weighing portfolio margin (issue 18, "tried
    as a new user"): what portfolio margin would need as a fraction of Reg T, the scenario
    that drives it (the PM block's driver, from the latest valuation's recorded inputs),
    how far the book could move under portfolio margin before a call, and what closing each
    option would do (its contribution; the what-if shows the whole effect)."""
    if (snapshot is None or account.margin_type == Account.MarginType.PORTFOLIO_MARGIN
            or not snapshot.regt_maintenance or snapshot.pm_requirement is None):
        return None
    result = explained_result(snapshot)
    driver = ((result.get("portfolio_margin") or {}).get("driver") or {})
    under_pm, _ = _distance_or_error(account, basis=Account.MarginType.PORTFOLIO_MARGIN)
    try:
        under_pm_change = contributions_under(account, Account.MarginType.PORTFOLIO_MARGIN)
    except Unvalued:
        under_pm_change = {}
    options = [{**p, "change_under_pm": under_pm_change.get(p["instrument"].pk)}
               for p in positions if p["instrument"] and p["instrument"].is_option
               and p.get("contribution") is not None]
    return {
        "pm_requirement": snapshot.pm_requirement, "reg_t": snapshot.regt_maintenance,
        "fraction": snapshot.pm_requirement / snapshot.regt_maintenance,
        "driver_words": move_in_words(driver["product_group"], driver["point"])
        if driver else "",
        "sentences_under_pm": distance_sentences(under_pm),
        "options": options,
    }


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
    return _page(request, "portal/history.html", account, "history",
                 chart=account_history_chart(account))


def account_history_chart(account: Account) -> dict:
    """The equity-against-requirement chart of the account's newest HISTORY_POINTS snapshots,
    oldest first: the portal's history and the desk's snapshot tab draw this one."""
    newest = list(MarginSnapshot.objects.filter(account=account)
                  .order_by("-computed_at", "-id")
                  .values_list("computed_at", "equity", "requirement")[:HISTORY_POINTS])
    return history_chart(list(reversed(newest)))


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
    return _page(request, "portal/what_if.html", account, "what_if",
                 **what_if(account, request.GET))


def what_if(account: Account, data) -> dict:
    """The what-if form's context (the positions it can close, the form's values, its errors)
    and the pre-trade check the order would pass (``margin.pretrade.check``: nothing written):
    the client's portal and the staff desk run this one. ``data``: the form's GET."""
    held = list(account.positions.select_related("instrument").exclude(quantity=0)
                .order_by("instrument__symbol"))
    outcome, errors = None, []
    if data:
        orders, errors = _what_if_orders(account, data)
        if orders:
            try:
                outcome = check(account=account, orders=orders)
            except Unvalued as exc:
                errors = [f"the book cannot be valued now: {exc}"]
    return {"held": held, "outcome": outcome, "errors": errors, "form": data}


# Distance to a call ----------------------------------------------------------------------------

#: the preset a page shows first: the market down 10 %
DEFAULT_PRESET = -0.10


def _preset(raw: str | None) -> tuple[float, list[str]]:
    """The preset move the form picked (a whole percent among PRESETS), or the default with
    an error naming what was wrong."""
    if raw in (None, ""):
        return DEFAULT_PRESET, []
    choices = {f"{round(m * 100):d}": m for m in PRESETS}
    if raw not in choices:
        listed = ", ".join(f"{k} %" for k in choices)
        return DEFAULT_PRESET, [f"move: choose one of {listed}, not {raw!r}"]
    return choices[raw], []


def distance_sentences(distance: DistanceToCall | None) -> list[str]:
    """The overview's lines: "AAPL can fall 23.4 % before a call" per underlying (the nearer
    direction when only a rise would call it), and the whole market's."""
    if distance is None:
        return []
    if distance.in_deficit:
        return ["The account is in deficit now: any move is already a call until it is met."]
    lines = []
    rows = distance.underlyings + ([distance.market] if len(distance.underlyings) > 1 else [])
    for row in rows:
        name = row.group or "The whole market"
        limit = f"{distance.limit * 100:.0f} %"
        if row.down.found and abs(row.down.move) < 1e-12:
            lines.append(f"{name}: any fall brings a call (the account is at its requirement "
                         "now).")
        elif row.down.found:
            lines.append(f"{name} can fall {abs(row.down.move) * 100:.1f} % before a call.")
        elif row.up.found:
            lines.append(f"{name} can rise {row.up.move * 100:.1f} % before a call "
                         f"(no fall within {limit} calls it).")
        else:
            lines.append(f"No move of {name if row.group else 'the whole market'} within "
                         f"±{limit} brings a call.")
    return lines


def _direction_words(direction, limit: float) -> str:
    if direction.found and abs(direction.move) < 1e-12:
        return "any (at the requirement now)"
    if direction.found:
        return move_percent(direction.move)
    return f"none within {'−' if direction.direction < 0 else '+'}{limit * 100:.0f} %"


def _distance_or_error(account: Account, **kwargs) -> tuple[DistanceToCall | None, str]:
    try:
        return distance_to_call(account, **kwargs), ""
    except Unvalued as exc:
        return None, f"The book cannot be valued at moved prices now: {exc}"


@login_required
def portal_distance(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(request, number)
    move, errors = _preset(request.GET.get("move"))
    distance, problem = _distance_or_error(account)
    chart, picked = None, None
    if distance is not None:
        picked = next((s for s in distance.stressed if abs(s.move - move) < 1e-9), None)
        curve = [(m, float(e)) for d in (distance.market.down, distance.market.up)
                 for m, e in d.curve]
        crossings = [d.move for d in (distance.market.down, distance.market.up) if d.found]
        chart = excess_chart(curve, crossings,
                             (picked.move, float(picked.excess)) if picked else None)
    rows = []
    if distance is not None:
        listed = distance.underlyings + ([distance.market] if len(distance.underlyings) > 1
                                         else [])
        for row in listed:
            rows.append({"label": row.label, "whole_market": row.group is None,
                         "down": _direction_words(row.down, distance.limit),
                         "up": _direction_words(row.up, distance.limit)})
    presets = [{"value": f"{round(m * 100):d}", "label": move_percent(m, 0),
                "selected": abs(m - move) < 1e-9} for m in PRESETS]
    return _page(request, "portal/distance.html", account, "distance", distance=distance,
                 problem=problem, errors=errors, chart=chart, picked=picked, presets=presets,
                 rows=rows, stressed=[{"move": move_percent(s.move, 0), "row": s,
                                       "picked": s is picked}
                                      for s in (distance.stressed if distance else [])],
                 sentences=distance_sentences(distance))


# Portfolio-margin application --------------------------------------------------------------------

def _pm_disclosure(account: Account) -> RiskDisclosure | None:
    return (RiskDisclosure.objects.filter(client_id=account.client_id,
                                          document=PM_DISCLOSURE_DOCUMENT)
            .order_by("-delivered_at", "-id").first())


def _rule_set_to_judge(account: Account) -> RuleSet:
    """The firm's active rule set; before the firm has adopted one, the house defaults it
    would adopt, unsaved (a page read writes nothing: submission adopts them through
    ``eligibility.services``)."""
    return RuleSet.objects.filter(status=RuleSet.Status.ACTIVE).first() or RuleSet(
        firm=account.firm, version=0, **DEFAULTS)


@login_required
def portal_pm(request: HttpRequest, number: str) -> HttpResponse:
    """The portfolio-margin application: the eligibility check rule by rule in words, the
    risk disclosure to read and acknowledge, submission, status and decision. Writes go
    through the existing services (``accounts.services.acknowledge_disclosure`` /
    ``deliver_disclosure``, ``eligibility.services.create_application``); a refusal is shown
    in its own words and changes nothing (POST, then redirect)."""
    account = _account(request, number)
    if request.method == "POST":
        _pm_post(request, account)
        return redirect("portal-pm", number=account.number)
    applications = list(Application.objects.filter(account=account)
                        .order_by("-created_at", "-id"))
    live = next((a for a in applications if a.state in Application.LIVE_STATES), None)
    latest = applications[0] if applications else None
    evaluation = (Evaluation.objects.filter(application=latest)
                  .order_by("-evaluated_at", "-id").first() if latest else None)
    result, _ = evaluate_account(account, _rule_set_to_judge(account))
    disclosure = _pm_disclosure(account)
    return _page(request, "portal/pm.html", account, "pm", result=result,
                 rules=[{"label": o.rule.replace("_", " ").capitalize().replace("Pm ", "PM "),
                         "outcome": o}
                        for o in result.outcomes], disclosure=disclosure,
                 acknowledged=bool(disclosure and disclosure.acknowledged_at),
                 applications=applications, live=live, latest=latest, evaluation=evaluation,
                 may_apply=account.margin_type != Account.MarginType.PORTFOLIO_MARGIN
                 and live is None and account.status != Account.Status.CLOSED)


def _pm_post(request: HttpRequest, account: Account) -> None:
    action = request.POST.get("action")
    try:
        if action == "acknowledge":
            if request.POST.get("read") != "yes":
                messages.error(request, "read: tick the box to confirm you have read the "
                                        "disclosure; nothing was recorded.")
                return
            disclosure = _pm_disclosure(account)
            if disclosure is not None and disclosure.acknowledged_at is None:
                acknowledge_disclosure(disclosure=disclosure, actor=request.user)
            elif disclosure is None:
                # shown on this page, so delivered now, and signed at the same moment
                deliver_disclosure(client=account.client, document=PM_DISCLOSURE_DOCUMENT,
                                   actor=request.user, acknowledged=True)
            messages.success(request, "Your acknowledgement of the portfolio-margin risk "
                                      "disclosure is recorded.")
        elif action == "apply":
            application = create_application(account=account, actor=request.user,
                                             submit=True)
            messages.success(request, f"Application #{application.pk} is submitted; the "
                                      "firm's risk desk reviews it next.")
        else:
            messages.error(request, "action: acknowledge or apply; nothing was changed.")
    except DomainError as exc:
        messages.error(request, f"Nothing was changed: {exc}")
