"""Writes to the book. One transaction each, the audit event inside it."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone
from guardian.shortcuts import assign_perm

from brokerage import audit
from brokerage.errors import InvalidInput
from brokerage.id_sets import id_set
from brokerage.models import Firm, Membership
from brokerage.roles import Role
from brokerage.tenancy import firm_of, membership_of, require_tenant_actor

from .models import Account, Client, Instrument, LedgerEntry, Position, RiskDisclosure
from .signals import book_changed, client_profile_changed


class BookError(InvalidInput):
    """A write to the book refused, with the field it concerns."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


def _snapshot(obj, fields: list[str]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in fields}


CLIENT_FIELDS = [
    "kind", "name", "email", "born_or_incorporated_on", "investment_objective",
    "years_trading_stocks", "years_trading_options", "years_trading_futures",
    "options_approval_level", "annual_income", "net_worth", "liquid_net_worth",
    "holds_unlisted_derivatives",
]
# What a client write may set, and what its audited before/after shows.
CLIENT_WRITABLE_FIELDS = [*CLIENT_FIELDS, "phone", "address", "portal_user"]


def _client_snapshot(client: Client) -> dict[str, Any]:
    snapshot = _snapshot(client, [*CLIENT_FIELDS, "phone", "address"])
    # The portal login linked to the client: who can read this client's accounts.
    snapshot["portal_user"] = client.portal_user.username if client.portal_user_id else None
    return snapshot


def portal_user_choices(*, client: Client | None = None):
    """Users who may be linked as a client's portal login: the firm in scope's active
    client-role users not already linked to another client, and the client's current login
    even if deactivated since (else its form could not be saved unchanged). Fails closed
    without a firm in scope."""
    client_members = Membership.objects.filter(role=Role.CLIENT).values("user_id")
    linked = Client.cross_firm.for_compliance(reason="one client per portal login").filter(
        portal_user__isnull=False)
    offered = Q(is_active=True)
    if client is not None and client.pk:
        linked = linked.exclude(pk=client.pk)
        if client.portal_user_id is not None:
            offered |= Q(pk=client.portal_user_id)
    return get_user_model().objects.filter(offered, pk__in=client_members).exclude(
        pk__in=linked.values("portal_user_id")).order_by("username")


def _check_portal_user(*, firm: Firm, client_pk: int | None, user) -> None:
    """Only the firm's own client-role user, not linked elsewhere, becomes a portal login."""
    if user is None:
        return
    membership = membership_of(user)
    if membership is None or membership.firm_id != firm.pk or membership.role != Role.CLIENT:
        # The same words for a foreign, a staff and an unknown user: nothing to learn here.
        raise BookError("portal_user", "must be a client user of this firm")
    linked = Client.cross_firm.for_compliance(reason="one client per portal login").filter(
        portal_user=user)
    if client_pk is not None:
        linked = linked.exclude(pk=client_pk)
    if linked.exists():
        raise BookError("portal_user", "this user is already the portal login of another client")


def _check_client_fields(names) -> None:
    for name in names:
        if name not in CLIENT_WRITABLE_FIELDS:
            raise BookError(name, "not a client field that can be set")


def create_client(*, firm: Firm, actor, **fields: Any) -> Client:
    require_tenant_actor(firm=firm, actor=actor)
    _check_client_fields(fields)
    with transaction.atomic():
        _check_portal_user(firm=firm, client_pk=None, user=fields.get("portal_user"))
        client = Client(firm=firm, **fields)
        client.full_clean()
        client.save()
        audit.record(firm=firm, actor=actor, event_type="client.created", obj=client,
                     after=_client_snapshot(client))
    return client


def update_client(*, client: Client, actor, **changes: Any) -> Client:
    require_tenant_actor(firm=client.firm, actor=actor)
    _check_client_fields(changes)
    with transaction.atomic():
        client = Client.objects.select_for_update().get(pk=client.pk)
        before = _client_snapshot(client)
        if "portal_user" in changes:
            _check_portal_user(firm=client.firm, client_pk=client.pk, user=changes["portal_user"])
        for name, value in changes.items():
            setattr(client, name, value)
        client.full_clean()
        client.save()
        audit.record(firm=client.firm, actor=actor, event_type="client.updated", obj=client,
                     before=before, after=_client_snapshot(client))
        transaction.on_commit(lambda: client_profile_changed.send(Client, client=client))
    return client


def deliver_disclosure(*, client: Client, document: str, actor, version: str = "2026-01",
                       acknowledged: bool = False, at: datetime | None = None) -> RiskDisclosure:
    require_tenant_actor(firm=client.firm, actor=actor)
    at = at or timezone.now()
    with transaction.atomic():
        disclosure = RiskDisclosure.objects.create(
            firm=client.firm, client=client, document=document, version=version,
            delivered_at=at, acknowledged_at=at if acknowledged else None,
        )
        audit.record(firm=client.firm, actor=actor, event_type="disclosure.delivered",
                     obj=disclosure, after={"client": client.pk, "document": document,
                                            "acknowledged": acknowledged})
    return disclosure


def acknowledge_disclosure(*, disclosure: RiskDisclosure, actor,
                           at: datetime | None = None) -> RiskDisclosure:
    require_tenant_actor(firm=disclosure.firm, actor=actor)
    with transaction.atomic():
        disclosure = RiskDisclosure.objects.select_for_update().get(pk=disclosure.pk)
        if disclosure.acknowledged_at is not None:
            raise BookError("acknowledged_at", "this disclosure is already acknowledged")
        disclosure.acknowledged_at = at or timezone.now()
        disclosure.save(update_fields=["acknowledged_at"])
        audit.record(firm=disclosure.firm, actor=actor, event_type="disclosure.acknowledged",
                     obj=disclosure, after={"acknowledged_at": disclosure.acknowledged_at})
    return disclosure


def open_account(*, client: Client, number: str, registration: str, margin_type: str, actor,
                 opened_on: date | None = None, base_currency: str = "USD") -> Account:
    require_tenant_actor(firm=client.firm, actor=actor)
    with transaction.atomic():
        if Account.objects.filter(number=number).exists():
            raise BookError("number", f"account number {number} is already used in this firm")
        account = Account(firm=client.firm, client=client, number=number,
                          registration=registration, margin_type=margin_type,
                          opened_on=opened_on or timezone.localdate(),
                          base_currency=base_currency, regime=client.firm.intraday_regime)
        account.full_clean()
        account.save()
        audit.record(firm=client.firm, actor=actor, event_type="account.opened", obj=account,
                     after={"number": number, "registration": registration,
                            "margin_type": margin_type, "client": client.pk,
                            "regime": account.regime})
    return account


def change_account(*, account: Account, actor, event_type: str, reason: str = "",
                   **changes: Any) -> Account:
    """Change margin type or status (approval, restriction, downgrade): audited, locked."""
    require_tenant_actor(firm=account.firm, actor=actor)
    allowed = {"margin_type", "status"}
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        before = _snapshot(account, sorted(allowed))
        for name, value in changes.items():
            if name not in allowed:
                raise BookError(name, "only margin_type and status change this way")
            setattr(account, name, value)
        account.full_clean()
        account.save()
        audit.record(firm=account.firm, actor=actor, event_type=event_type, obj=account,
                     before=before, after={**_snapshot(account, sorted(allowed)),
                                           "reason": reason})
        # The requirement depends on the margin type (and a closed account is not valued):
        # the account is marked dirty in this transaction, as a ledger entry or a position is.
        # No cash or position moved: ``changes`` is empty (not a transaction of the book).
        book_changed.send(Account, account_ids=[account.pk], changes=[])
    return account


REGIME_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER})


def set_regime(*, account: Account, regime: str, actor, reason: str) -> Account:
    """Move an account between the legacy pattern-day-trader treatment and the intraday margin
    standard (MARGIN_CALLS.md section 5; firms may phase in by account until 20 October
    2027): the firm's admin or risk officer, with a reason, audited."""
    require_tenant_actor(firm=account.firm, actor=actor, roles=REGIME_ROLES)
    if regime not in Account.Regime.values:
        raise BookError("regime", f"{regime!r} is not a regime; one of "
                                  f"{', '.join(Account.Regime.values)}")
    if not (reason or "").strip():
        raise BookError("reason", "say why the account's regime changes")
    with transaction.atomic():
        account = Account.objects.select_for_update().get(pk=account.pk)
        if account.regime == regime:
            raise BookError("regime", f"account {account.number} is already under {regime}")
        before = account.regime
        account.regime = regime
        account.save(update_fields=["regime", "updated_at"])
        audit.record(firm=account.firm, actor=actor, event_type="account.regime_changed",
                     obj=account, before={"regime": before},
                     after={"regime": regime, "reason": reason.strip()})
    return account


def post_ledger_entry(*, account: Account, kind: str, amount: Decimal, actor, memo: str = "",
                      effective_at: datetime | None = None,
                      corrects: LedgerEntry | None = None) -> LedgerEntry:
    require_tenant_actor(firm=account.firm, actor=actor)
    amount = Decimal(amount)
    if not amount.is_finite():
        raise BookError("amount", "must be a finite amount")
    if kind == LedgerEntry.Kind.DEPOSIT and amount <= 0:
        raise BookError("amount", "a deposit is a positive amount")
    if kind == LedgerEntry.Kind.WITHDRAWAL and amount >= 0:
        raise BookError("amount", "a withdrawal is a negative amount")
    with transaction.atomic():
        entry = LedgerEntry(firm=account.firm, account=account, kind=kind, amount=amount,
                            currency=account.base_currency, memo=memo,
                            effective_at=effective_at or timezone.now(), corrects=corrects,
                            created_by=actor if actor is not None and actor.pk else None)
        entry.full_clean()
        entry.save()
        audit.record(firm=account.firm, actor=actor, event_type="ledger.posted", obj=entry,
                     after={"account": account.number, "kind": kind, "amount": amount,
                            "corrects": corrects.pk if corrects else None})
        # marked in this transaction; what moved goes with it (intraday margin reads it)
        book_changed.send(Account, account_ids=[account.pk], changes=[{
            "account_id": account.pk, "ledger_kind": kind, "amount": amount,
            "effective_at": entry.effective_at}])
    return entry


def cash_balance(account: Account, as_of: datetime | None = None) -> Decimal:
    """The balance is derived from the entries, never stored."""
    entries = LedgerEntry.objects.filter(account=account)
    if as_of is not None:
        entries = entries.filter(effective_at__lte=as_of)
    return entries.aggregate(total=Sum("amount"))["total"] or Decimal("0.00")


def cash_balances(accounts) -> dict[int, Decimal]:
    """Every account's balance in one query (a sweep's chunk), as `cash_balance` derives it."""
    totals = dict(LedgerEntry.objects.filter(account_id__in=id_set(a.pk for a in accounts))
                  .order_by()
                  .values("account_id").annotate(total=Sum("amount"))
                  .values_list("account_id", "total"))
    return {account.pk: totals.get(account.pk) or Decimal("0.00") for account in accounts}


def set_position(*, account: Account, instrument: Instrument, quantity: Decimal, actor,
                 cost_basis: Decimal | None = None) -> Position | None:
    """Book the account's position in an instrument (a fill or a transfer). 0 closes it."""
    require_tenant_actor(firm=account.firm, actor=actor)
    quantity = Decimal(quantity)
    if not quantity.is_finite():
        raise BookError("quantity", "must be a finite number")
    with transaction.atomic():
        position = Position.objects.select_for_update().filter(
            account=account, instrument=instrument).first()
        before = {"quantity": position.quantity} if position else None
        if quantity == 0:
            if position is not None:
                position.delete()
            result = None
        else:
            if position is None:
                position = Position(firm=account.firm, account=account, instrument=instrument,
                                    quantity=quantity, cost_basis=cost_basis or Decimal(0))
            else:
                position.quantity = quantity
                if cost_basis is not None:
                    position.cost_basis = cost_basis
            position.save()
            result = position
        audit.record(firm=account.firm, actor=actor, event_type="position.set",
                     object_type="accounts.position", object_id=f"{account.pk}:{instrument.pk}",
                     before=before, after={"account": account.number,
                                           "instrument": instrument.symbol,
                                           "quantity": quantity})
        # marked in this transaction; what moved goes with it (intraday margin reads it)
        book_changed.send(Account, account_ids=[account.pk], changes=[{
            "account_id": account.pk, "instrument_id": instrument.pk,
            "quantity_before": before["quantity"] if before else Decimal(0),
            "quantity_after": quantity}])
    return result


def grant_account_access(*, account: Account, user, actor) -> None:
    """Let a client user see one account (a django-guardian object grant, audited)."""
    require_tenant_actor(firm=account.firm, actor=actor)
    if firm_of(user) != account.firm:
        raise BookError("user", "a user of another firm cannot be granted this account")
    with transaction.atomic():
        assign_perm("view_account", user, account)
        audit.record(firm=account.firm, actor=actor, event_type="account.access_granted",
                     obj=account, after={"user": user.username, "permission": "view_account"})


# What an instrument's audit event records: its terms (related instruments by symbol).
INSTRUMENT_TERMS = [
    "kind", "product_class", "class_group", "product_group", "multiplier", "strike", "right",
    "expiry", "exercise_style", "dividend_yield", "decimals0", "decimals1", "tick_lower",
    "tick_upper", "liquidity", "fee_tier",
]


def create_instrument(*, symbol: str, kind: str, actor, firm: Firm | None = None,
                      **terms: Any) -> Instrument:
    """List an instrument with its contract terms.

    Shared market reference data (`firm` None: a listed contract is the same whoever holds it)
    is audited on the platform chain; a firm's own instrument (an LP position, with its own
    ticks and liquidity) on that firm's chain.
    """
    with transaction.atomic():
        # The symbol is unique among shared instruments and within a firm; the scoped default
        # manager cannot see across firms, so the check reads explicitly (full_clean cannot).
        taken = Instrument.cross_firm.for_compliance(reason="an instrument symbol is unique").filter(
            symbol=symbol, firm=firm).exists()
        if taken:
            raise BookError("symbol", f"{symbol} is already listed")
        instrument = Instrument(firm=firm, symbol=symbol, kind=kind, **terms)
        instrument.full_clean(validate_unique=False, validate_constraints=False)
        instrument.save()
        related = {name: getattr(instrument, name).symbol
                   for name in ("underlying", "token0", "token1")
                   if getattr(instrument, f"{name}_id") is not None}
        audit.record(firm=firm, actor=actor, event_type="instrument.created", obj=instrument,
                     after={"symbol": symbol, **_snapshot(instrument, INSTRUMENT_TERMS),
                            **related})
    return instrument
