"""The daily margin report per account (requirement, equity, excess, open calls), below, and
the FINRA 4220 daily record: for each account and day a call existed, the amount required
and when and how it was met (MARGIN_CALLS.md section 9). Read from the append-only
``CallRecord`` rows (written on issue, on every amount change, satisfaction and move) and the
satisfactions received up to the day."""

from __future__ import annotations

import csv
import io
import zoneinfo
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import OuterRef, Q, Subquery

from accounts.models import Account
from brokerage.scope import current_firm

from ..models import MarginSnapshot
from .models import CallRecord, CallSatisfaction, MarginCall

COLUMNS = ["date", "account", "call", "kind", "rule", "as_of", "due_date", "amount_required",
           "amount_due", "status", "met_on", "manner", "amount_received"]


def rows_for(day: date) -> list[dict[str, str]]:
    """One row per call alive on ``day`` (issued by then, not closed before it) and per
    satisfaction received that day; the firm in scope's accounts only."""
    calls = MarginCall.objects.filter(as_of__lte=day).filter(
        Q(closed_on__isnull=True) | Q(closed_on__gte=day)).select_related("account")
    out: list[dict[str, str]] = []
    for call in calls.order_by("account__number", "pk"):
        latest = (CallRecord.objects.filter(call=call, day__lte=day)
                  .order_by("-day", "-recorded_at", "-pk").first())
        if latest is None:
            continue
        base = {"date": day.isoformat(), "account": call.account.number, "call": str(call.pk),
                "kind": call.kind, "rule": call.rule, "as_of": call.as_of.isoformat(),
                "due_date": call.due_date.isoformat(),
                "amount_required": str(latest.amount_required),
                "amount_due": str(latest.amount_due), "status": latest.status,
                "met_on": (call.closed_on.isoformat()
                           if call.status == "met" and call.closed_on == day else ""),
                "manner": "", "amount_received": ""}
        received = CallSatisfaction.objects.filter(call=call, received_on=day).order_by("pk")
        if not received:
            out.append(base)
        for satisfaction in received:
            out.append({**base, "manner": satisfaction.manner,
                        "amount_received": str(satisfaction.amount)})
    return out


def csv_for(day: date) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows_for(day))
    return buffer.getvalue()


# The daily margin report per account, for compliance ---------------------------------------

ACCOUNT_COLUMNS = ["date", "account", "margin_type", "account_status", "snapshot", "valued_at",
                   "requirement", "equity", "excess", "open_calls", "open_amount_due", "calls"]


def account_rows(day: date) -> list[dict[str, str]]:
    """One row per account of the firm in scope: its requirement, equity and excess as last
    recorded by the end of ``day`` (the history snapshot the day ends on, in the firm's time
    zone) and the margin calls open at the end of that day (with what each still asked, from
    its 4220 rows). A few queries for the whole firm, none per account."""
    zone = zoneinfo.ZoneInfo(current_firm().time_zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    latest = (MarginSnapshot.objects.filter(account=OuterRef("pk"), computed_at__lt=end)
              .order_by("-computed_at", "-pk").values("pk")[:1])
    accounts = list(Account.objects.filter(opened_on__lte=day).annotate(
        snapshot_id=Subquery(latest)).order_by("number"))
    snapshots = MarginSnapshot.objects.in_bulk([a.snapshot_id for a in accounts if a.snapshot_id])
    last_record = CallRecord.objects.filter(call=OuterRef("pk"), day__lte=day).order_by(
        "-day", "-recorded_at", "-pk")
    calls = (MarginCall.objects.filter(as_of__lte=day)
             .filter(Q(closed_on__isnull=True) | Q(closed_on__gt=day))
             .annotate(due_on_day=Subquery(last_record.values("amount_due")[:1]),
                       status_on_day=Subquery(last_record.values("status")[:1]))
             .filter(status_on_day__in=MarginCall.OPEN_STATES).order_by("pk"))
    open_calls: dict[int, list[MarginCall]] = {}
    for call in calls:
        open_calls.setdefault(call.account_id, []).append(call)
    rows = []
    for account in accounts:
        snapshot = snapshots.get(account.snapshot_id)
        called = open_calls.get(account.pk, [])
        rows.append({
            "date": day.isoformat(), "account": account.number,
            "margin_type": account.margin_type, "account_status": account.status,
            "snapshot": str(snapshot.pk) if snapshot else "",
            "valued_at": snapshot.computed_at.astimezone(zone).isoformat() if snapshot else "",
            "requirement": _money(snapshot.requirement if snapshot else None),
            "equity": _money(snapshot.equity if snapshot else None),
            "excess": _money(snapshot.excess if snapshot else None),
            "open_calls": str(len(called)),
            "open_amount_due": _money(sum((c.due_on_day for c in called), Decimal("0"))),
            "calls": ";".join(f"{c.pk}:{c.kind}:{c.status_on_day}" for c in called),
        })
    return rows


def _money(value: Decimal | None) -> str:
    return "" if value is None else str(value.quantize(Decimal("0.01")))


def account_csv(day: date) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=ACCOUNT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(account_rows(day))
    return buffer.getvalue()
