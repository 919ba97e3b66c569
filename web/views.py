"""The client portal: a client's accounts, their latest snapshot and its explanation.

Reads snapshots only (never recomputes on page load). A client sees the accounts django-guardian
grants them (view_account); another firm's or another client's account is a 404.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from guardian.shortcuts import get_objects_for_user

from accounts.models import Account
from brokerage.scope import current_firm_or_none
from margin.explain import explain_snapshot, explained_result
from margin.models import MarginSnapshot
from margin.snapshots import latest_snapshot


def _visible_accounts(user) -> QuerySet[Account]:
    if current_firm_or_none() is None:
        raise Http404("no firm")
    return get_objects_for_user(user, "accounts.view_account",
                                klass=Account.objects.select_related("client"),
                                accept_global_perms=False, with_superuser=False)


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


@login_required
def portal_home(request: HttpRequest) -> HttpResponse:
    rows = _with_latest_snapshots(_visible_accounts(request.user))
    return render(request, "portal/home.html", {"rows": rows})


@login_required
def portal_account(request: HttpRequest, number: str) -> HttpResponse:
    account = _visible_accounts(request.user).filter(number=number).first()
    if account is None:
        raise Http404("no such account")
    snapshot = latest_snapshot(account)
    result = explained_result(snapshot) if snapshot else {}
    context = {"account": account, "snapshot": snapshot,
               "explanation": explain_snapshot(snapshot, result) if snapshot else "",
               "result": result}
    return render(request, "portal/account.html", context)
