"""The firm risk pages and their home items (see the package docstring)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import formats, timezone

from brokerage.roles import Role
from brokerage.scope import current_firm
from margin.simulation import LISTED, SimulationRefused, simulate
from web.charts import bar_chart
from web.desk.access import desk_view
from web.desk.attention import AttentionItem, Urgency, counted, provider

from . import figures
from .forms import SimulationForm

#: who works the firm's risk: the risk officers, the margin desk, the firm's admin (compliance
#: reads the record in its own section)
RISK_ROLES = frozenset({Role.RISK_OFFICER, Role.MARGIN_DESK, Role.FIRM_ADMIN})
CHARTED = 15  # bars of the simulator's deficit chart (the table lists every listed account)


@desk_view(roles=RISK_ROLES)
def firm_risk(request: HttpRequest) -> HttpResponse:
    firm = current_firm()
    exposures = figures.concentration()
    return render(request, "desk/risk/index.html", {
        "section": "desk-risk", "day": figures.day_move(firm),
        "largest": figures.largest_requirements(), "closest": figures.closest_to_call(),
        "exposures": exposures,
        "exposure_chart": bar_chart([(e.class_group, float(e.gross)) for e in exposures]),
        "rejections": figures.oracle_rejections(),
        "stale": list(figures.stale_accounts().select_related("account")
                      .order_by("marked_at")[:figures.LISTED]),
        "stale_count": figures.stale_accounts().count(),
        "stale_minutes": int(figures.stale_limit().total_seconds() // 60),
        "unvalued": list(figures.unvalued_accounts().select_related("account")
                         .order_by("account__number")[:figures.LISTED]),
        "unvalued_count": figures.unvalued_accounts().count(),
        "form": SimulationForm(),
    })


@desk_view(roles=RISK_ROLES)
def simulate_move(request: HttpRequest) -> HttpResponse:
    """The simulator (a GET form: it writes nothing, and its answer can be bookmarked)."""
    form = SimulationForm(request.GET or None)
    result = chart = None
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        try:
            result = simulate(current_firm(), symbol=data["symbol"], move=data["move"],
                              scenario=data["scenario"] or None)
        except SimulationRefused as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            chart = bar_chart([(m.number, float(m.excess_after))
                               for m in result.deficits[:CHARTED]])
    return render(request, "desk/risk/simulate.html", {
        "section": "desk-risk", "form": form, "result": result, "chart": chart,
        "listed": LISTED, "charted": CHARTED})


urlpatterns = [
    path("", firm_risk, name="desk-risk"),
    path("simulate/", simulate_move, name="desk-risk-simulate"),
]


@provider
def risk_items(request: HttpRequest, role: str) -> list[AttentionItem]:
    """Rejected oracle rounds under the firm's books, margin the sweep left stale, accounts it
    could not value: for the roles that work the firm's risk."""
    if role not in RISK_ROLES:
        return []
    page = reverse("desk-risk")
    items = []
    rejections = figures.oracle_rejections()
    if rejections:
        newest = rejections[0].rejection
        items.append(AttentionItem(
            title=counted(len(rejections), "oracle round rejected", "oracle rounds rejected"),
            url=f"{page}#oracle", urgency=Urgency.TODAY, count=len(rejections),
            detail=f"latest {newest.instrument.symbol} ({newest.failed_check}) at "
                   f"{formats.time_format(timezone.localtime(newest.rejected_at), 'H:i')}; "
                   "its holders keep their last good margin"))
    stale = figures.stale_accounts()
    count = stale.count()
    if count:
        oldest = stale.order_by("marked_at").values_list("marked_at", flat=True).first()
        items.append(AttentionItem(
            title=counted(count, "account with stale margin", "accounts with stale margin"),
            url=f"{page}#stale", urgency=Urgency.OVERDUE, count=count,
            detail=f"waiting for the sweep since "
                   f"{formats.date_format(timezone.localtime(oldest), 'M j, H:i')}"))
    unvalued = figures.unvalued_accounts().count()
    if unvalued:
        items.append(AttentionItem(
            title=counted(unvalued, "account the sweep could not value",
                          "accounts the sweep could not value"),
            url=f"{page}#stale", urgency=Urgency.TODAY, count=unvalued,
            detail="their figures are the last good ones"))
    return items
