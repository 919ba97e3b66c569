"""The firm's accounts, searched and listed from their current margin rows.

A firm may hold 100,000 accounts: the list reads ``AccountMargin`` (one row per account, what
the sweep keeps current; DESIGN.md "Scale") joined to the account and its client, filters and
sorts in the database and shows one page; nothing is valued on load. The number search is an
exact or prefix match on the firm's unique (firm, number) index; the name search a substring
of the client's name.

Stale: the current margin cannot be trusted as of now when the account was never valued, when
the last sweep could not value it (``flag``), or when an input marked it dirty longer ago than a
sweep may hold an account (``MARGIN_SWEEP_LEASE_S``: by then a sweep should have valued it).
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone

from accounts.models import Account
from brokerage.roles import Role
from margin.calls.models import MarginCall
from web.templatetags.money import usd

from ..access import desk_view
from ..attention import AttentionItem, Urgency, provider

PAGE_SIZE = 50

# label, ordering (the number last: a stable order for paging)
SORTS: dict[str, tuple[str, tuple]] = {
    "number": ("Account number", ("number",)),
    "client": ("Client name", ("client__name", "number")),
    "excess": ("Excess, smallest first (deficits first)",
               (F("current_margin__excess").asc(nulls_last=True), "number")),
    "-excess": ("Excess, largest first",
                (F("current_margin__excess").desc(nulls_last=True), "number")),
    "-requirement": ("Requirement, largest first",
                     (F("current_margin__requirement").desc(nulls_last=True), "number")),
    "-equity": ("Equity, largest first",
                (F("current_margin__equity").desc(nulls_last=True), "number")),
    "as_of": ("Valued, oldest first",
              (F("current_margin__computed_at").asc(nulls_first=True), "number")),
}

DEFICIT_CHOICES = [("", "Any"), ("deficit", "In deficit"),
                   ("uncalled", "In deficit without an open call")]


class AccountFilter(forms.Form):
    q = forms.CharField(required=False, max_length=100, strip=True,
                        label="Account number or client name")
    margin_type = forms.ChoiceField(required=False, label="Margin type",
                                    choices=[("", "Any"), *Account.MarginType.choices])
    status = forms.ChoiceField(required=False, label="Status",
                               choices=[("", "Any"), *Account.Status.choices])
    deficit = forms.ChoiceField(required=False, label="Deficit", choices=DEFICIT_CHOICES)
    stale = forms.BooleanField(required=False, label="Stale valuation only")
    sort = forms.ChoiceField(required=False, label="Sort by",
                             choices=[(key, label) for key, (label, _) in SORTS.items()])


def open_call_exists() -> Exists:
    return Exists(MarginCall.objects.filter(account=OuterRef("pk"),
                                            status__in=MarginCall.OPEN_STATES))


def stale_condition(now=None) -> Q:
    """The accounts whose current margin is stale (module docstring), as a filter on Account."""
    cutoff = (now or timezone.now()) - timedelta(seconds=float(settings.MARGIN_SWEEP_LEASE_S))
    return (Q(current_margin__isnull=True) | Q(current_margin__computed_at__isnull=True)
            | Q(current_margin__flag__gt="")
            | Q(current_margin__dirty_version__gt=F("current_margin__computed_version"),
                current_margin__marked_at__lt=cutoff))


def in_deficit_without_call() -> QuerySet[Account]:
    """Accounts whose current margin is below the requirement and that no open call covers:
    the deficit that reaches no queue (issue 19)."""
    return Account.objects.filter(current_margin__excess__lt=0).exclude(open_call_exists())


def filtered_accounts(data: dict) -> QuerySet[Account]:
    """The firm's accounts matching the form's cleaned `data`, in its order."""
    accounts = Account.objects.select_related("client", "current_margin").defer(
        "current_margin__risk_arrays")  # the arrays are the what-if's, not the list's
    query = data.get("q") or ""
    if query:
        accounts = accounts.filter(Q(number=query.upper()) | Q(number__startswith=query.upper())
                                   | Q(client__name__icontains=query))
    if data.get("margin_type"):
        accounts = accounts.filter(margin_type=data["margin_type"])
    if data.get("status"):
        accounts = accounts.filter(status=data["status"])
    if data.get("deficit"):
        accounts = accounts.filter(current_margin__excess__lt=0)
        if data["deficit"] == "uncalled":
            accounts = accounts.exclude(open_call_exists())
    if data.get("stale"):
        accounts = accounts.filter(stale_condition())
    return accounts.order_by(*SORTS[data.get("sort") or "number"][1])


@desk_view()
def account_list(request: HttpRequest) -> HttpResponse:
    form = AccountFilter(request.GET or None, label_suffix="")
    page = None
    if form.is_bound and not form.is_valid():
        accounts = Account.objects.none()  # a bad filter lists nothing rather than everything
    else:
        accounts = filtered_accounts(form.cleaned_data if form.is_bound else {})
        page = Paginator(accounts, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "desk/accounts/list.html", {
        "section": "desk-accounts", "form": form, "page": page,
        "query": query.urlencode(), "stale_cutoff_minutes":
        round(float(settings.MARGIN_SWEEP_LEASE_S) / 60, 1)})


@provider
def deficits_without_call(request: HttpRequest, role: str) -> list[AttentionItem]:
    """Accounts in deficit that no open call covers: nothing else puts them in front of anyone
    (the calls' own queue lists calls), so the margin desk and the risk officers see them."""
    if role not in (Role.MARGIN_DESK, Role.RISK_OFFICER):
        return []
    uncalled = in_deficit_without_call()
    count = uncalled.count()
    if not count:
        return []
    worst = uncalled.select_related("current_margin").order_by(
        "current_margin__excess", "number").first()
    return [AttentionItem(
        title=f"{count} account{'s' if count != 1 else ''} in deficit without an open call",
        url=reverse("desk-accounts") + "?deficit=uncalled&sort=excess",
        urgency=Urgency.TODAY, count=count,
        detail=f"the largest: {worst.number}, {usd(worst.current_margin.excess)}" if worst
        else "")]
