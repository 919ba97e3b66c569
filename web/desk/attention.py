"""What needs a staff member now: each desk section contributes the items it owns.

A section registers a provider (``@provider``) that, for the request's firm scope and the staff
member's role, returns its items: applications to review, calls due today, plans awaiting a
second person, rejected oracle rounds, stale snapshots... The home page lists them by urgency;
a provider answers with counts and a link to the list that holds the work, in a few queries.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from django.http import HttpRequest


class Urgency(IntEnum):
    OVERDUE = 0  # past a deadline (an overdue call, a snapshot older than its limit)
    TODAY = 1  # due today or waiting on this person
    SOON = 2  # coming up


@dataclass(frozen=True)
class AttentionItem:
    title: str  # "3 calls overdue"
    url: str  # the list or page that holds the work
    urgency: Urgency
    count: int
    detail: str = ""  # one line: the largest, the oldest, who is waiting


def counted(count: int, one: str, many: str) -> str:
    """An item's title: "1 call overdue", "3 calls overdue" (every section's items say it so)."""
    return f"{count} {one if count == 1 else many}"


Provider = Callable[[HttpRequest, str], list[AttentionItem]]
_PROVIDERS: list[Provider] = []


def provider(function: Provider) -> Provider:
    """Register `function(request, role) -> items` (call it at import of the section's module)."""
    _PROVIDERS.append(function)
    return function


def needs_attention(request: HttpRequest, role: str) -> list[AttentionItem]:
    """Every section's items with work in them (count > 0), the most urgent first."""
    items = [item for p in _PROVIDERS for item in p(request, role) if item.count > 0]
    return sorted(items, key=lambda i: (i.urgency, -i.count, i.title))
