"""Roles of a firm membership and what each may do; the platform's own (non-tenant) roles.

Roles carry the firm-wide rights; django-guardian grants per-object exceptions only (which
client user sees which account, which staff may approve which application). No tenant user
ever holds a global model permission: the admin and the API ask `can()` instead.
"""

from __future__ import annotations

from django.db import models


class Role(models.TextChoices):
    FIRM_ADMIN = "firm_admin", "Firm admin"
    RISK_OFFICER = "risk_officer", "Risk officer"
    MARGIN_DESK = "margin_desk", "Margin desk"
    COMPLIANCE = "compliance_officer", "Compliance officer"
    CLIENT = "client", "Client"


class PlatformRoleName(models.TextChoices):
    """Roles of the installation's own people, who belong to no firm and write no tenant data.

    The auditor reads every firm's audit trail (a cross-firm export states its reason and is
    recorded on the platform chain); the market-data operator loads prices and vols for every
    firm (its API comes with a later issue). Neither is a Django superuser: no one is.
    """

    AUDITOR = "auditor", "Platform auditor"
    MARKET_DATA = "market_data", "Market-data operator"


STAFF_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK, Role.COMPLIANCE})

# Firm-wide rights per role: (app_label.model, action) where action is view / add / change.
_WRITE_MODELS = {
    Role.FIRM_ADMIN: {
        "accounts.client", "accounts.account", "accounts.position", "accounts.instrument",
        "accounts.ledgerentry", "accounts.riskdisclosure", "brokerage.membership",
        "auth.user",  # the firm's own users, through the audited services in tenancy
        "brokerage.firm",  # the firm's own settings (its time zone)
    },
    Role.MARGIN_DESK: {"accounts.position", "accounts.ledgerentry"},
    Role.RISK_OFFICER: set(),
    Role.COMPLIANCE: set(),
}


def can(role: str | None, model_label: str, action: str) -> bool:
    """Whether a role may `action` ('view', 'add', 'change', 'delete') rows of `model_label`."""
    if role not in STAFF_ROLES:
        return False
    if action == "view":
        return True
    if action == "delete":
        return False  # the book is corrected by new rows, never by deleting history
    return model_label in _WRITE_MODELS.get(Role(role), set())
