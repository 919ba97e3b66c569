"""The desk's sections, in the order of the navigation bar, and who sees each.

A section shows in the bar only to the roles its page admits (the page itself enforces it);
tests/desk/test_access.py checks that every entry resolves and matches its view's roles.
"""

from __future__ import annotations

from dataclasses import dataclass

from brokerage.roles import Role


@dataclass(frozen=True)
class Section:
    url_name: str
    label: str
    roles: frozenset[str]


_ALL = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK, Role.COMPLIANCE})

SECTIONS: tuple[Section, ...] = (
    Section("desk-home", "Home", _ALL),
    Section("desk-approvals", "Approvals",
            frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.COMPLIANCE})),
    Section("desk-calls", "Margin calls", _ALL),
    Section("desk-accounts", "Accounts", _ALL),
    Section("desk-risk", "Firm risk",
            frozenset({Role.RISK_OFFICER, Role.MARGIN_DESK, Role.FIRM_ADMIN})),
    # The trail's readers (brokerage.api_views.TRAIL_READERS) and the risk officer, for the
    # daily margin record and report (web/desk/compliance/views.py SECTION_ROLES).
    Section("desk-compliance", "Compliance",
            frozenset({Role.COMPLIANCE, Role.FIRM_ADMIN, Role.RISK_OFFICER})),
    Section("desk-staff", "Staff", frozenset({Role.FIRM_ADMIN})),
)
