"""The audit trail's search as a compliance officer uses it: dates in the firm's zone, who,
what object, which event. Each event is put in words by ``web.desk.audit_words`` (the desk's
one presenter of audit events).

Reads go through ``audit.events_for(firm)``: the firm's own chain, so another firm's events
never reach the page (DESIGN.md: scoped reads).
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from accounts.models import Account
from brokerage import audit
from brokerage.models import AuditEvent, Firm
from brokerage.tenancy import firm_users

from ..accounts.trail import account_event_keys
from ..audit_words import SYSTEM, event_words, model_words

# The search ----------------------------------------------------------------------------------

def event_type_choices(firm: Firm) -> list[tuple[str, str]]:
    """The event types the firm's chain holds, in words, alphabetically (the search's and the
    export's choices)."""
    types = audit.events_for(firm).order_by().values_list("event_type", flat=True).distinct()
    return sorted(((t, event_words(t)) for t in types), key=lambda c: c[1])


def _day(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise forms.ValidationError(f"{label}: {value!r} is not a date (YYYY-MM-DD)") from None


class TrailSearch(forms.Form):
    """The trail's filters. Dates are days in the firm's zone, both inclusive; the object is a
    type and its id (an account also by its number)."""

    since = forms.CharField(label="From", required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.CharField(label="To", required=False,
                            widget=forms.DateInput(attrs={"type": "date"}))
    actor = forms.ChoiceField(label="Who", required=False)
    event_type = forms.ChoiceField(label="Event", required=False)
    object_type = forms.ChoiceField(label="Object", required=False)
    object_id = forms.CharField(label="Id or number", required=False, max_length=64)

    def __init__(self, data: Any, *, firm: Firm) -> None:
        super().__init__(data)
        self.firm = firm
        trail = audit.events_for(firm).order_by()
        people = firm_users(firm).order_by("username")
        self.fields["actor"].choices = [("", "Anyone"), (SYSTEM, "System")] + [
            (u.username, f"{u.get_full_name() or u.username} ({u.username})") for u in people]
        self.fields["event_type"].choices = [("", "Any event"), *event_type_choices(firm)]
        objects = trail.exclude(object_type="").values_list("object_type", flat=True).distinct()
        self.fields["object_type"].choices = [("", "Any object")] + sorted(
            ((t, model_words(t)) for t in objects), key=lambda c: c[1])

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        errors = []
        for name, label in (("since", "From"), ("until", "To")):
            try:
                data[name] = _day(data.get(name, ""), label)
            except forms.ValidationError as exc:
                errors.append(exc)
                data[name] = None
        if not errors and data["since"] and data["until"] and data["since"] > data["until"]:
            errors.append(forms.ValidationError(
                f"From ({data['since']}) is after To ({data['until']}): no day is in that range"))
        if data.get("object_id") and not data.get("object_type"):
            errors.append(forms.ValidationError(
                "Id or number: choose the object's type as well (an id means nothing alone)"))
        if errors:
            raise forms.ValidationError(errors)
        return data

    def events(self) -> QuerySet[AuditEvent]:
        """The firm's events matching the (valid) filters, newest first."""
        data = self.cleaned_data
        zone = zoneinfo.ZoneInfo(self.firm.time_zone)
        events = audit.events_for(self.firm).select_related("actor")
        if data["since"]:
            events = events.filter(created_at__gte=datetime.combine(data["since"], time(), zone))
        if data["until"]:
            events = events.filter(created_at__lt=datetime.combine(
                data["until"] + timedelta(days=1), time(), zone))
        if data["actor"] == SYSTEM:
            events = events.filter(actor__isnull=True)
        elif data["actor"]:
            events = events.filter(actor__in=get_user_model().objects.filter(
                username=data["actor"]))
        if data["event_type"]:
            events = events.filter(event_type=data["event_type"])
        account = self._account()
        if account is not None:
            # An account's events are its own and its children's (positions, ledger entries,
            # calls...), found as the account's audit tab finds them: one lookup, two pages.
            events = events.filter(pk__in=[row["pk"] for row in account_event_keys(account)])
        elif data["object_type"]:
            events = events.filter(object_type=data["object_type"])
            if data["object_id"]:
                events = events.filter(object_id=data["object_id"].strip())
        return events.order_by("-seq")

    def _account(self) -> Account | None:
        """The account the search names (object type account, by its number or its id), looked
        up in the firm's own accounts (the tenant manager): another firm's finds nothing."""
        data = self.cleaned_data
        wanted = data["object_id"].strip()
        if data["object_type"] != Account._meta.label_lower or not wanted:
            return None
        accounts = Account.objects.filter(number__iexact=wanted)
        if wanted.isdigit():
            accounts = accounts | Account.objects.filter(pk=int(wanted))
        return accounts.order_by("pk").first()
