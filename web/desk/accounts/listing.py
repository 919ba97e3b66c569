"""The firm's accounts, searched and listed from their current margin rows.

A firm may hold 100,000 accounts: the list reads ``AccountMargin`` (every account has its one
row from the start, ``margin.receivers``; the sweep keeps it current; DESIGN.md "Scale") joined
to the account and its client, filters and sorts in the database and shows one page; nothing is
valued on load. Driven from the current-margin rows, a sort by excess or requirement sorts those
narrow rows and joins only the page's accounts (100,000 accounts in PostgreSQL: about 0.15 s).
A search that is the start of an account number is a range on the firm's unique (firm, number)
index; anything else searches the clients' names (a substring, any case).

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
from django.utils.functional import cached_property

from accounts.models import Account
from brokerage.roles import Role
from brokerage.scope import current_firm
from margin.calls.models import MarginCall
from margin.models import AccountMargin
from web.templatetags.money import usd

from ..access import desk_view
from ..attention import AttentionItem, Urgency, counted, provider

PAGE_SIZE = 50

# label, ordering (the number last: a stable order for paging)
SORTS: dict[str, tuple[str, tuple]] = {
    "number": ("Account number", ("account__number",)),
    "client": ("Client name", ("account__client__name", "account__number")),
    "excess": ("Excess, smallest first (deficits first)",
               (F("excess").asc(nulls_last=True), "account__number")),
    "-excess": ("Excess, largest first", (F("excess").desc(nulls_last=True), "account__number")),
    "-requirement": ("Requirement, largest first",
                     (F("requirement").desc(nulls_last=True), "account__number")),
    "-equity": ("Equity, largest first", (F("equity").desc(nulls_last=True), "account__number")),
    "as_of": ("Valued, oldest first",
              (F("computed_at").asc(nulls_first=True), "account__number")),
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
    """An open call on the current-margin row's account."""
    return Exists(MarginCall.objects.filter(account=OuterRef("account"),
                                            status__in=MarginCall.OPEN_STATES))


def stale_condition(now=None) -> Q:
    """The current-margin rows that are stale (module docstring)."""
    cutoff = (now or timezone.now()) - timedelta(seconds=float(settings.MARGIN_SWEEP_LEASE_S))
    return (Q(computed_at__isnull=True) | Q(flag__gt="")
            | Q(dirty_version__gt=F("computed_version"), marked_at__lt=cutoff))


def in_deficit_without_call() -> QuerySet[AccountMargin]:
    """Current margins below the requirement that no open call covers: the deficit that
    reaches no queue (issue 19)."""
    return AccountMargin.objects.filter(excess__lt=0).exclude(open_call_exists())


def _numbers_from(prefix: str) -> dict[str, str]:
    """Account numbers starting with `prefix`, as a range the (firm, number) index answers (a
    LIKE 'x%' uses it only under the C collation)."""
    return {"number__gte": prefix, "number__lt": prefix + "\U0010ffff"}


def matching_accounts(data: dict) -> QuerySet[AccountMargin]:
    """The firm's current-margin rows matching the form's cleaned `data` (what the list
    counts; ``in_order`` reads the page)."""
    rows = AccountMargin.objects.all()
    query = data.get("q") or ""
    if query:
        numbers = _numbers_from(query.upper())
        if Account.objects.filter(**numbers).exists():
            rows = rows.filter(**{f"account__{k}": v for k, v in numbers.items()})
        else:
            rows = rows.filter(account__client__name__icontains=query)
    if data.get("margin_type"):
        rows = rows.filter(account__margin_type=data["margin_type"])
    if data.get("status"):
        rows = rows.filter(account__status=data["status"])
    if data.get("deficit"):
        rows = rows.filter(excess__lt=0)
        if data["deficit"] == "uncalled":
            rows = rows.exclude(open_call_exists())
    if data.get("stale"):
        rows = rows.filter(stale_condition())
    return rows


def in_order(rows: QuerySet[AccountMargin], sort: str) -> QuerySet[AccountMargin]:
    """`rows` with their accounts and clients, in the order `sort` names. The account's own
    firm is named too (the tenant manager names the row's): then the (firm, number) index
    gives the list its order without sorting every account."""
    return (rows.filter(account__firm=current_firm()).select_related("account__client")
            .defer("risk_arrays")  # the what-if's arrays, not the list's
            .order_by(*SORTS[sort or "number"][1]))


class _CountedPaginator(Paginator):
    """Pages of one queryset counted on another: the rows without the joins that only order
    them (a count over 100,000 accounts reads the current-margin rows alone)."""

    def __init__(self, object_list, per_page: int, *, counted: QuerySet) -> None:
        super().__init__(object_list, per_page)
        self._counted = counted

    @cached_property
    def count(self) -> int:
        return self._counted.count()


@desk_view()
def account_list(request: HttpRequest) -> HttpResponse:
    form = AccountFilter(request.GET or None, label_suffix="")
    page = None
    if not form.is_bound or form.is_valid():  # a bad filter lists nothing rather than all
        data = form.cleaned_data if form.is_bound else {}
        rows = matching_accounts(data)
        page = _CountedPaginator(in_order(rows, data.get("sort", "")), PAGE_SIZE,
                                 counted=rows).get_page(request.GET.get("page"))
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
    worst = uncalled.select_related("account").order_by("excess", "account_id").first()
    return [AttentionItem(
        title=counted(count, "account in deficit without an open call",
                      "accounts in deficit without an open call"),
        url=reverse("desk-accounts") + "?deficit=uncalled&sort=excess",
        urgency=Urgency.TODAY, count=count,
        detail=f"the largest: {worst.account.number}, {usd(worst.excess)}" if worst else "")]
