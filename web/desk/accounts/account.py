"""One account on the desk (the 360 view): the client's overview as the client sees it (the
portal's own context, ``web.views.account_overview``), then a tab each for positions, the
ledger, the snapshot history, calls, PM applications, restrictions and the audit trail, and a
what-if that runs the pre-trade check for staff (``margin.pretrade.check``: nothing written).

Every staff role reads every tab (``brokerage.roles.can``: view is every staff role's); another
firm's account is a 404 (``desk_object`` reads through the tenant manager).
"""

from __future__ import annotations

from django.core.paginator import Paginator
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from accounts.models import Account, LedgerEntry
from eligibility.models import Application, Evaluation
from margin.calls.models import CallNotice, MarginCall, Restriction
from margin.executions.models import Execution
from margin.models import MarginSnapshot
from web.views import _positions, account_history_chart, account_overview
from web.views import what_if as portal_what_if

from ..access import desk_object, desk_view
from ..audit_words import present
from .trail import account_event_keys, events_by_pk

PAGE_SIZE = 50
RECENT_EXECUTIONS = 25


def _account(number: str) -> Account:
    return desk_object(Account.objects.select_related("client", "current_margin")
                       .defer("current_margin__risk_arrays"), number=number)


def _page(request: HttpRequest, template: str, account: Account, tab: str,
          **context) -> HttpResponse:
    return render(request, template, {"section": "desk-accounts", "account": account,
                                      "tab": tab, **context})


def _paged(request: HttpRequest, rows) -> object:
    return Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))


@desk_view()
def overview(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    figures = account_overview(account)
    current, snapshot = figures["current"], figures["snapshot"]
    # when the figures shown were computed (a current row can stand without a kept snapshot)
    valued_at = (current.computed_at if current is not None and current.computed_at
                 else snapshot.computed_at if snapshot is not None else None)
    return _page(request, "desk/accounts/overview.html", account, "overview",
                 valued_at=valued_at, **figures)


@desk_view()
def positions(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    current = getattr(account, "current_margin", None)
    snapshot = current.snapshot if current is not None and current.snapshot_id else None
    valued, _prices = _positions(snapshot)
    valued_by_id = {row["instrument"].pk: row for row in valued if row["instrument"]}
    held = [{"position": p, "valued": valued_by_id.get(p.instrument_id)}
            for p in account.positions.select_related("instrument").order_by("instrument__symbol")]
    executions = list(Execution.objects.filter(account=account).select_related("instrument")
                      .order_by("-trade_time", "-id")[:RECENT_EXECUTIONS])
    return _page(request, "desk/accounts/positions.html", account, "positions", held=held,
                 snapshot=snapshot, executions=executions)


@desk_view()
def ledger(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    entries = LedgerEntry.objects.filter(account=account).select_related("created_by")
    balance = entries.aggregate(total=Sum("amount"))["total"]
    return _page(request, "desk/accounts/ledger.html", account, "ledger", balance=balance,
                 page=_paged(request, entries.order_by("-effective_at", "-id")))


@desk_view()
def history(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    snapshots = MarginSnapshot.objects.filter(account=account).order_by("-computed_at", "-id")
    page = _paged(request, snapshots.only(
        "computed_at", "reason", "margin_type", "equity", "requirement", "excess",
        "parameter_set", "engine_version", "flags"))
    return _page(request, "desk/accounts/history.html", account, "history",
                 chart=account_history_chart(account), page=page)


def _call_url(call: MarginCall) -> str:
    """The call's page on the margin-call desk."""
    return reverse("desk-call", args=[call.pk])


@desk_view()
def calls(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    rows = list(MarginCall.objects.filter(account=account)
                .annotate(extension_count=Count("extensions", distinct=True),
                          satisfaction_count=Count("satisfactions", distinct=True))
                .order_by("-as_of", "-id"))
    calls_with_links = [{"call": c, "url": _call_url(c)} for c in rows]
    notices = list(CallNotice.objects.filter(call__account=account).select_related("call")
                   .order_by("-created_at", "-id")[:PAGE_SIZE])
    return _page(request, "desk/accounts/calls.html", account, "calls",
                 open_calls=[r for r in calls_with_links if r["call"].is_open],
                 past_calls=[r for r in calls_with_links if not r["call"].is_open],
                 notices=notices)


@desk_view()
def applications(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    rows = list(Application.objects.filter(account=account)
                .select_related("rule_set", "created_by", "reviewed_by", "decided_by")
                .order_by("-created_at", "-id"))
    latest: dict[int, Evaluation] = {}
    for evaluation in (Evaluation.objects.filter(application__in=[a.pk for a in rows])
                       .order_by("application", "-evaluated_at", "-id")):
        latest.setdefault(evaluation.application_id, evaluation)
    return _page(request, "desk/accounts/applications.html", account, "applications",
                 applications=[{"application": a, "evaluation": latest.get(a.pk)}
                               for a in rows])


@desk_view()
def restrictions(request: HttpRequest, number: str) -> HttpResponse:
    account = _account(number)
    rows = list(Restriction.objects.filter(account=account).select_related("call")
                .order_by("-starts_on", "-id"))
    return _page(request, "desk/accounts/restrictions.html", account, "restrictions",
                 active=[r for r in rows if r.state == Restriction.State.ACTIVE],
                 ended=[r for r in rows if r.state != Restriction.State.ACTIVE])


@desk_view()
def audit_trail(request: HttpRequest, number: str) -> HttpResponse:
    """The account's own query (the account and its children, ``account_event_keys``), put in
    words by the desk's one presenter of audit events (``web.desk.audit_words``)."""
    account = _account(number)
    page = _paged(request, account_event_keys(account))
    page.object_list = events_by_pk(page.object_list)
    return _page(request, "desk/accounts/audit.html", account, "audit", page=page,
                 rows=present(page.object_list, firm=account.firm))


@desk_view()
def what_if(request: HttpRequest, number: str) -> HttpResponse:
    """The portal's what-if for staff (``web.views.what_if``: the same form and the pre-trade
    check the order would pass, restrictions, deficits, intraday margin); a GET, since nothing
    is written."""
    account = _account(number)
    return _page(request, "desk/accounts/what_if.html", account, "what_if",
                 **portal_what_if(account, request.GET))
