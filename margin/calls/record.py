"""The FINRA 4220 daily record: for each account and day a call existed, the amount required
and when and how it was met (MARGIN_CALLS.md section 9). Read from the append-only
``CallRecord`` rows (written on issue, on every amount change, satisfaction and move) and the
satisfactions received up to the day."""

from __future__ import annotations

import csv
import io
from datetime import date

from django.db.models import Q

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
