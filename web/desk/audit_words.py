"""Audit events in words, the one presenter every desk page that shows the trail uses (the
compliance trail, an account's audit tab, a staff member's page): the event type in words, who by
name, the object by its number or username, a summary of what changed, and the details as a
key/value list, never a JSON dump (the export is where the raw record goes).

Pages choose their events (their own scoped queries); ``present`` only puts them in words, with
one query per kind of name for the whole page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.apps import apps

from accounts.models import Account
from brokerage.models import AuditEvent, Firm
from brokerage.roles import PlatformRoleName, Role
from brokerage.tenancy import firm_users
from web.templatetags.money import format_money

SYSTEM = "system"  # the actor filter's value for events no person caused (beat, the sweep)

# The subject of an event type (its part before the dot) in the trade's words; the rest of the
# type is the verb ("margin_call.issued" -> "Margin call issued").
SUBJECTS = {
    "pm_application": "PM application", "ledger": "Ledger entry", "api_token": "API token",
    "second_factor": "Authenticator", "ruleset": "Eligibility rule set",
    "risk_parameters": "Risk parameters", "call_policy": "Call policy",
    "disclosure": "Risk disclosure", "audit": "Audit trail", "margin": "Margin",
    "platform_user": "Platform user", "oracle": "Oracle round", "rate": "Risk-free rate",
    "vols": "Implied vols", "prices": "Prices", "history": "Price history",
}
# Types whose subject-and-verb reading would be awkward.
EVENT_WORDS = {
    "audit.exported": "Audit trail exported",
    "audit.exported_cross_firm": "Audit trail exported across firms",
    "audit.verified": "Audit trail verified",
    "audit.rekeyed": "Audit trail re-keyed",
    "margin.snapshot_chunk": "Margin snapshots recorded",
    "margin.end_of_day": "End-of-day margin run",
    "staff.login": "Staff login",
    "platform.login": "Platform login",
    "second_factor.issued": "Authenticator issued",
    "position.set": "Position set",
    "account.access_granted": "Portal access to the account granted",
    "user.password_set": "Password set",
    "membership.created": "Joined the firm",
    "login.refused_locked_out": "Login refused: locked out",
    "second_factor.reset": "Second factor reset",
}
# Keys whose values are dollars (shown with the `usd` formatting every page uses).
MONEY_KEYS = frozenset({
    "amount", "amount_due", "amount_required", "amount_received", "equity", "requirement",
    "excess", "cash", "annual_income", "net_worth", "liquid_net_worth", "minimum_equity",
    "house_requirement", "deficit",
})
# What a summary of a new object names first, when present.
SUMMARY_KEYS = ("account", "number", "username", "name", "symbol", "instrument", "kind",
                "status", "amount", "amount_due", "quantity", "role", "document", "user", "count",
                "file_format", "since", "until", "verified", "version")
CODE = re.compile(r"[a-z]+(?:_[a-z0-9]+)+")  # snake_case codes, not names, symbols or numbers
LIST_SHOWN = 10  # items of a list the details show before "... N more"


def event_words(event_type: str) -> str:
    """'margin_call.issued' -> 'Margin call issued' (EVENT_WORDS first)."""
    if event_type in EVENT_WORDS:
        return EVENT_WORDS[event_type]
    subject, _, verb = event_type.partition(".")
    noun = SUBJECTS.get(subject, subject.replace("_", " ").capitalize())
    return f"{noun} {verb.replace('_', ' ')}".strip()


def role_words(actor_role: str) -> str:
    if not actor_role or actor_role == SYSTEM:
        return "System"
    if actor_role.startswith("platform_"):
        name = actor_role.removeprefix("platform_")
        return (PlatformRoleName(name).label if name in PlatformRoleName.values
                else name.replace("_", " ").capitalize())
    return Role(actor_role).label if actor_role in Role.values else actor_role


def model_words(object_type: str) -> str:
    """'margin.margincall' -> 'Margin call' (the model's verbose name), else the type itself."""
    if object_type == "audit.chain":
        return "Audit trail"
    try:
        model = apps.get_model(object_type)
    except (LookupError, ValueError):
        return object_type
    return str(model._meta.verbose_name).capitalize()


def _number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _same(old: Any, new: Any) -> bool:
    # '702000' and '702000.00' are one amount: a change of the stored precision is not a change.
    if old == new:
        return True
    if isinstance(old, str | int) and isinstance(new, str | int):
        a, b = _number(old), _number(new)
        return a is not None and a == b
    return False


def value_words(key: str, value: Any) -> str:
    """One value as the page shows it: money formatted, yes/no, a dash for nothing; a list
    joined (the first LIST_SHOWN), a mapping as its key: value pairs."""
    leaf = key.rsplit(".", 1)[-1]
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if leaf in MONEY_KEYS and _number(value) is not None:
        return format_money(value)
    if isinstance(value, list):
        shown = ", ".join(value_words(leaf, v) for v in value[:LIST_SHOWN])
        more = len(value) - LIST_SHOWN
        return f"{shown} … and {more} more" if more > 0 else (shown or "none")
    if isinstance(value, dict):
        return "; ".join(f"{k.replace('_', ' ')}: {value_words(k, v)}" for k, v in value.items())
    if leaf == "role" and value in Role.values:
        return str(Role(value).label)
    if isinstance(value, str) and CODE.fullmatch(value):
        return value.replace("_", " ")  # a stored code ('pm_minimum_equity') read as words
    return str(value)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys one level deep ({'rows': {'a': {'value': 3}}} ->
    {'rows.a': {'value': 3}}), so the details list stays one line per field."""
    if not isinstance(value, dict):
        return {prefix or "value": value}
    flat: dict[str, Any] = {}
    for key, inner in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(inner, dict) and not prefix:
            flat.update(flatten(inner, name))
        else:
            flat[name] = inner
    return flat


@dataclass(frozen=True)
class Field:
    name: str
    before: str | None  # None: the field is new (or the event has no "before")
    after: str | None  # None: the field was removed

    @property
    def changed(self) -> bool:
        return self.before is not None and self.after is not None and self.before != self.after


def fields_of(event: AuditEvent) -> list[Field]:
    """Each field of the event's before and after, in words, once."""
    before = flatten(event.before) if event.before is not None else {}
    after = flatten(event.after) if event.after is not None else {}
    names = list(after) + [k for k in before if k not in after]
    rows = []
    for name in names:
        old = value_words(name, before[name]) if name in before else None
        new = value_words(name, after[name]) if name in after else None
        if name in before and name in after and _same(before[name], after[name]):
            old = new
        rows.append(Field(name.replace("_", " "), old, new))
    return rows


def change_summary(event: AuditEvent) -> str:
    """One line: what changed ('status: issued → overdue'), or what a new record holds."""
    before, after = event.before, event.after
    if isinstance(before, dict) and isinstance(after, dict):
        changed = [k for k in after if k in before and not _same(before[k], after[k])]
        # (PostgreSQL's jsonb keeps no key order: the summary's own order decides)
        changed += [k for k in SUMMARY_KEYS if k in after and k not in before][:1]
        parts = [f"{k.replace('_', ' ')}: {value_words(k, before[k])} → "
                 f"{value_words(k, after[k])}" if k in before else
                 f"{k.replace('_', ' ')}: {value_words(k, after[k])}" for k in changed[:3]]
        if len(changed) > 3:
            parts.append(f"{len(changed) - 3} more")
        return "; ".join(parts) or "no field changed"
    shown = after if isinstance(after, dict) else before if isinstance(before, dict) else None
    if shown is None:
        return "" if after is None else value_words("value", after)
    keys = [k for k in SUMMARY_KEYS if k in shown and not isinstance(shown[k], dict | list)]
    if not keys:  # nothing the summary knows: the record's first plain fields
        keys = [k for k, v in shown.items() if not isinstance(v, dict | list)]
    return "; ".join(f"{k.replace('_', ' ')}: {value_words(k, shown[k])}" for k in keys[:4])


@dataclass(frozen=True)
class TrailRow:
    event: AuditEvent
    words: str
    who: str
    role: str
    object_label: str
    summary: str
    fields: list[Field]


def present(events: list[AuditEvent], *, firm: Firm) -> list[TrailRow]:
    """The page's rows: accounts named by number and users by username, one query each for the
    page (not one per row); both read within the firm (its accounts, its users)."""
    def ids(object_type: str) -> set[int]:
        return {int(e.object_id) for e in events
                if e.object_type == object_type and e.object_id.isdigit()}

    numbers = dict(Account.objects.filter(pk__in=ids("accounts.account"))
                   .values_list("pk", "number"))
    usernames = dict(firm_users(firm).filter(pk__in=ids("auth.user"))
                     .values_list("pk", "username"))
    rows = []
    for event in events:
        rows.append(TrailRow(
            event=event, words=event_words(event.event_type),
            who=(event.actor.get_full_name() or event.actor.username) if event.actor else "System",
            role=role_words(event.actor_role),
            object_label=_object_label(event, numbers, usernames),
            summary=change_summary(event), fields=fields_of(event)))
    return rows


def _object_label(event: AuditEvent, numbers: dict[int, str], usernames: dict[int, str]) -> str:
    if not event.object_type:
        return ""
    label = model_words(event.object_type)
    if event.object_type == "accounts.account" and event.object_id.isdigit():
        return f"{label} {numbers.get(int(event.object_id), '#' + event.object_id)}"
    if event.object_type == "audit.chain":
        return label
    if event.object_type == "auth.user" and event.object_id.isdigit():
        username = usernames.get(int(event.object_id))
        return f"{label} {username}" if username else f"{label} #{event.object_id}"
    text = f"{label} #{event.object_id}" if event.object_id else label
    about = next((d.get("account") for d in (event.after, event.before)
                  if isinstance(d, dict) and isinstance(d.get("account"), str)), None)
    return f"{text} ({about})" if about else text
