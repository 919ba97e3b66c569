"""Booking executions: one transaction each (a batch: one for all), audited, idempotent by the
client's execution id, through the pre-trade check.

Positions and cash change only through ``accounts.services`` (``set_position``,
``post_ledger_entry``), which send ``book_changed`` inside the transaction: the account is
marked dirty (``margin.dirty``) exactly when the booking commits, and whoever else listens to
the book (intraday margin) sees every booking.

An order the pre-trade check rejects is refused (422, the check's reasons in the one error
body) unless the booker holds an override role and gives a reason; the override is kept on the
execution and in its audit event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from accounts.models import Account, Instrument, LedgerEntry, Position
from accounts.services import BookError, create_instrument, post_ledger_entry, set_position
from brokerage import audit
from brokerage.errors import (
    DomainError,
    IllegalTransition,
    InvalidInput,
    NotFound,
    NotPermitted,
    Unprocessable,
)
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.scope import firm_scope
from brokerage.tenancy import require_tenant_actor, role_of

from .. import pretrade
from ..calls.services import credit_risk_reducing_trade
from .models import Execution

#: who books executions (the desk and its supervisors) and who may book one the pre-trade
#: check rejects, with a reason (the firm's risk officers and admins)
BOOKING_ROLES = frozenset({Role.FIRM_ADMIN, Role.MARGIN_DESK, Role.RISK_OFFICER})
OVERRIDE_ROLES = frozenset({Role.FIRM_ADMIN, Role.RISK_OFFICER})
ID_LENGTH = 64


class Rejected(Unprocessable, code="pretrade_rejected"):
    """The pre-trade check rejects the order: every reason listed."""


@dataclass(frozen=True)
class Ticket:
    """One execution as received, checked (``parse_ticket``) but not yet booked."""

    client_execution_id: str
    account_number: str
    side: str
    quantity: Decimal
    price: Decimal
    fees: Decimal
    trade_time: datetime
    instrument: str | int | None = None
    contract: dict[str, Any] | None = None
    override_reason: str = ""


# Parsing ---------------------------------------------------------------------------------------

def _decimal(raw: Any, field: str, errors: list, *, positive: bool) -> Decimal | None:
    if isinstance(raw, bool) or raw is None or raw == "":
        errors.append((field, "required", "a number is required"))
        return None
    try:
        number = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        errors.append((field, "invalid", f"{raw!r} is not a number"))
        return None
    if not number.is_finite():
        errors.append((field, "invalid", f"{raw!r} is not a finite number"))
    elif positive and number <= 0:
        errors.append((field, "invalid", f"must be greater than 0, got {number}"))
    elif number < 0:
        errors.append((field, "invalid", f"must not be negative, got {number}"))
    else:
        return number
    return None


CONTRACT_TERMS = ("kind", "underlying", "right", "strike", "expiry", "multiplier",
                  "exercise_style", "symbol")


def parse_ticket(raw: dict[str, Any], prefix: str = "") -> Ticket:
    """A ticket from a mapping (API body, CSV row): every problem named, nothing written."""
    errors: list[tuple[str, str, str]] = []
    ident = str(raw.get("client_execution_id") or "").strip()
    if not ident:
        errors.append(("client_execution_id", "required", "the client execution id is required"))
    elif len(ident) > ID_LENGTH:
        errors.append(("client_execution_id", "invalid", f"at most {ID_LENGTH} characters"))
    number = str(raw.get("account") or "").strip()
    if not number:
        errors.append(("account", "required", "the account number is required"))
    side = str(raw.get("side") or "").strip().lower()
    if side not in Execution.Side.values:
        errors.append(("side", "invalid", f"{raw.get('side')!r} is not buy or sell"))
    quantity = _decimal(raw.get("quantity"), "quantity", errors, positive=True)
    price = _decimal(raw.get("price"), "price", errors, positive=False)
    fees = _decimal(raw.get("fees", "0") if raw.get("fees") not in (None, "") else "0", "fees",
                    errors, positive=False)
    when = raw.get("trade_time")
    trade_time = timezone.now()
    if isinstance(when, datetime):
        trade_time = when
    elif when not in (None, ""):
        parsed = parse_datetime(str(when)) if isinstance(when, str) else None
        if parsed is None:
            errors.append(("trade_time", "invalid", f"{when!r} is not an ISO 8601 date-time"))
        else:
            trade_time = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
    instrument, contract = raw.get("instrument"), raw.get("contract")
    if instrument in (None, "") and not contract:
        errors.append(("instrument", "required", "name the instrument (id or symbol) or give "
                                                 "a new listed contract's terms"))
    elif instrument not in (None, "") and contract:
        errors.append(("contract", "invalid", "give the instrument or a contract, not both"))
    if contract is not None and not isinstance(contract, dict):
        errors.append(("contract", "invalid", "the contract's terms are an object"))
    elif contract:
        for name in sorted(set(contract) - set(CONTRACT_TERMS)):
            errors.append((f"contract.{name}", "unknown_field", f"unknown field {name!r}"))
    if errors:
        raise InvalidInput(errors=[(f"{prefix}{f}", c, m) for f, c, m in errors])
    return Ticket(ident, number, side, quantity, price, fees, trade_time,
                  instrument if instrument not in (None, "") else None, contract or None,
                  str(raw.get("override_reason") or "").strip())


# Instruments -----------------------------------------------------------------------------------

def _instrument(ticket: Ticket, actor) -> Instrument:
    if ticket.contract:
        return _listed_contract(ticket.contract, actor)
    return instrument_named(ticket.instrument)


def instrument_named(ident: str | int | None) -> Instrument:
    """A listed instrument by id or symbol (shared, or the firm's own)."""
    found = None
    if isinstance(ident, int) and not isinstance(ident, bool):
        found = Instrument.objects.filter(pk=ident).first()
    elif isinstance(ident, str) and ident.strip():
        ident = ident.strip()
        found = Instrument.objects.filter(symbol=ident).first()
        if found is None and ident.isdigit() and int(ident) < 2 ** 63:
            found = Instrument.objects.filter(pk=int(ident)).first()
    if found is None:
        raise InvalidInput(f"no instrument {ident!r}", field="instrument", code="unknown")
    return found


def _listed_contract(terms: dict[str, Any], actor) -> Instrument:
    """A new listed option or future from its terms, listed through the instrument path
    (``accounts.services.create_instrument``, shared reference data); an existing listing of
    the same terms is reused."""
    errors: list[tuple[str, str, str]] = []
    kind = terms.get("kind")
    if kind not in (Instrument.Kind.EQUITY_OPTION, Instrument.Kind.INDEX_OPTION,
                    Instrument.Kind.FUTURE):
        errors.append(("contract.kind", "invalid", "a listed contract is an equity_option, "
                                                   "index_option or future"))
    under = Instrument.objects.filter(symbol=str(terms.get("underlying") or "")).first()
    if under is None:
        errors.append(("contract.underlying", "unknown",
                       f"no underlying {terms.get('underlying')!r}"))
    expiry = parse_date(str(terms.get("expiry") or ""))
    if expiry is None:
        errors.append(("contract.expiry", "invalid", "the expiry is a date (YYYY-MM-DD)"))
    option = kind in (Instrument.Kind.EQUITY_OPTION, Instrument.Kind.INDEX_OPTION)
    strike = None
    if option:
        strike = _decimal(terms.get("strike"), "contract.strike", errors, positive=True)
        if terms.get("right") not in Instrument.Right.values:
            errors.append(("contract.right", "invalid", "the right is call or put"))
    multiplier = _decimal(terms.get("multiplier", 100 if option else 1), "contract.multiplier",
                          errors, positive=True)
    if errors:
        raise InvalidInput(errors=errors)
    if option:
        symbol = terms.get("symbol") or (f"{under.symbol} {expiry:%y%m%d}"
                                         f"{terms['right'][0].upper()}{strike.normalize():f}")
    else:
        symbol = terms.get("symbol") or f"{under.symbol} {expiry:%y%m%d}F"
    existing = Instrument.objects.filter(symbol=symbol).first()
    if existing is not None:
        return existing
    style = terms.get("exercise_style") or (
        "european" if kind == Instrument.Kind.INDEX_OPTION else "american" if option else "")
    return create_instrument(
        symbol=symbol, kind=kind, actor=actor, underlying=under if option else None,
        product_class=under.product_class if option else Instrument.ProductClass.FUTURE
        if under.kind != Instrument.Kind.INDEX else under.product_class,
        class_group=under.class_group, product_group=under.product_group,
        multiplier=multiplier, strike=strike, right=terms.get("right", "") if option else "",
        expiry=expiry, exercise_style=style, description=f"listed on booking: {symbol}")


# Booking ---------------------------------------------------------------------------------------

def _post(*, account: Account, instrument: Instrument, kind: str, side: str, quantity: Decimal,
          price: Decimal, fees: Decimal, trade_time: datetime, actor, memo: str,
          corrects_entries: tuple[LedgerEntry | None, LedgerEntry | None] = (None, None),
          ledger_kind: str = LedgerEntry.Kind.TRADE_SETTLEMENT, fee_sign: int = -1
          ) -> dict[str, Any]:
    """Move the position and the cash (inside the caller's transaction): the fields an
    execution records."""
    signed = quantity if side == Execution.Side.BUY else -quantity
    position = Position.objects.select_for_update().filter(account=account,
                                                          instrument=instrument).first()
    before = position.quantity if position else Decimal(0)
    after = before + signed
    cash = pretrade.trade_cash(instrument, signed, price)
    basis = (position.cost_basis if position else Decimal(0)) - cash
    set_position(account=account, instrument=instrument, quantity=after, actor=actor,
                 cost_basis=basis if after != 0 else None)
    settlement = fee_entry = None
    if cash != 0:
        settlement = post_ledger_entry(account=account, kind=ledger_kind, amount=cash,
                                       actor=actor, memo=memo[:200], effective_at=trade_time,
                                       corrects=corrects_entries[0])
    if fees:
        fee_entry = post_ledger_entry(account=account, kind=ledger_kind if fee_sign > 0
                                      else LedgerEntry.Kind.FEE,
                                      amount=(fee_sign * fees).quantize(Decimal("0.01")),
                                      actor=actor, memo=f"fees: {memo}"[:200],
                                      effective_at=trade_time, corrects=corrects_entries[1])
    return {"position_before": before, "position_after": after, "cash_amount": cash,
            "settlement": settlement, "fee_entry": fee_entry}


def _snapshot(execution: Execution) -> dict[str, Any]:
    return {"client_execution_id": execution.client_execution_id,
            "account": execution.account.number, "instrument": execution.instrument.symbol,
            "kind": execution.kind, "side": execution.side, "quantity": execution.quantity,
            "price": execution.price, "fees": execution.fees, "trade_time": execution.trade_time,
            "position_before": execution.position_before,
            "position_after": execution.position_after, "cash_amount": execution.cash_amount,
            "reverses": execution.reverses_id, "corrects": execution.corrects_id,
            "origin": execution.origin_id, "reason": execution.reason,
            "override_reason": execution.override_reason,
            "pretrade": execution.pretrade}


def _require_booker(firm: Firm, actor) -> None:
    require_tenant_actor(firm=firm, actor=actor, roles=BOOKING_ROLES if actor else None)


def _checked(account: Account, instrument: Instrument, ticket: Ticket, actor
             ) -> tuple[dict[str, Any], str, Any]:
    """The pre-trade check of the ticket: its record, and the override if one was needed."""
    order = pretrade.Order(instrument, ticket.side, ticket.quantity, ticket.price, ticket.fees)
    try:
        result = pretrade.check(account=account, orders=[order], buying_power=False)
    except pretrade.Unvalued as exc:
        result = None
        reasons = [("unvalued", f"the pre-trade check cannot value the book: {exc}")]
    else:
        reasons = [(r.code, r.message) for r in result.reasons]
    record = result.as_record() if result else {"decision": "reject", "reasons": [
        {"code": c, "message": m} for c, m in reasons]}
    if not reasons:
        return record, "", None
    if not ticket.override_reason:
        raise Rejected(errors=[("pretrade", code, message) for code, message in reasons])
    if actor is None or role_of(actor) not in OVERRIDE_ROLES:
        raise NotPermitted("only a risk officer or a firm admin may override the pre-trade "
                           "check", field="override_reason")
    return record, ticket.override_reason[:300], actor


def book_execution(*, firm: Firm, actor, ticket: Ticket, corrects: Execution | None = None
                   ) -> tuple[Execution, bool]:
    """Book one execution (its own transaction, or the caller's batch): the execution and
    whether it was booked now (False: a resend of the same id, the original returned)."""
    _require_booker(firm, actor)
    with firm_scope(firm), transaction.atomic():
        found = Execution.objects.filter(client_execution_id=ticket.client_execution_id).first()
        if found is not None:
            return found, False
        account = Account.objects.select_for_update().filter(
            number=ticket.account_number).first()
        if account is None:
            raise NotFound(f"no account {ticket.account_number} in your firm", field="account")
        if account.status == Account.Status.CLOSED:
            raise IllegalTransition(f"account {account.number} is closed", field="account")
        instrument = _instrument(ticket, actor)
        record, override_reason, override_by = _checked(account, instrument, ticket, actor)
        moved = _post(account=account, instrument=instrument, kind=Execution.Kind.TRADE,
                      side=ticket.side, quantity=ticket.quantity, price=ticket.price,
                      fees=ticket.fees, trade_time=ticket.trade_time, actor=actor,
                      memo=f"execution {ticket.client_execution_id}: {ticket.side} "
                           f"{ticket.quantity} {instrument.symbol} @ {ticket.price}")
        try:
            with transaction.atomic():
                execution = Execution.objects.create(
                    firm=firm, client_execution_id=ticket.client_execution_id, account=account,
                    instrument=instrument, side=ticket.side, quantity=ticket.quantity,
                    price=ticket.price, fees=ticket.fees, trade_time=ticket.trade_time,
                    pretrade=record, override_reason=override_reason, override_by=override_by,
                    corrects=corrects,
                    booked_by=actor if actor is not None and actor.pk else None, **moved)
        except IntegrityError:
            raise IllegalTransition(f"execution {ticket.client_execution_id} is being booked "
                                    "by another request: resend it",
                                    field="client_execution_id") from None
        audit.record(firm=firm, actor=actor, event_type="execution.booked", obj=execution,
                     after=_snapshot(execution))
        _credit_calls(account, execution)
        if override_by is not None:
            audit.record(firm=firm, actor=actor, event_type="execution.pretrade_overridden",
                         obj=execution, after={"reason": override_reason,
                                               "reasons": record["reasons"]})
    return execution, True


def _credit_calls(account: Account, execution: Execution) -> None:
    """A trade that reduced the account's risk meets its open equity-based calls by what it
    added to the excess at the prices it was checked at (``credit_risk_reducing_trade``)."""
    before, after = (execution.pretrade or {}).get("excess_liquidity") or (None, None)
    if before is None or after is None:
        return
    improvement = Decimal(after) - Decimal(before)
    if improvement > 0:
        credit_risk_reducing_trade(
            account=account, improvement=improvement,
            note=f"execution {execution.client_execution_id}: excess {before} -> {after}")


def book_batch(*, firm: Firm, actor, tickets: Sequence[Ticket]) -> list[tuple[Execution, bool]]:
    """A batch, all or nothing: the first refusal (named ``executions[i].field``) books none."""
    with transaction.atomic():
        booked = []
        for k, ticket in enumerate(tickets):
            try:
                booked.append(book_execution(firm=firm, actor=actor, ticket=ticket))
            except DomainError as exc:
                raise type(exc)(errors=[(f"executions[{k}].{e['field']}".rstrip("."),
                                         e["code"], e["message"]) for e in exc.errors]) from None
    return booked


def bust_execution(*, execution: Execution, actor, reason: str,
                   corrected: Ticket | None = None) -> Execution:
    """Reverse an execution with a linked bust (opposite side, the same quantity and price,
    its ledger entries corrected); with ``corrected``, book the corrected execution too,
    linked to the one it corrects. Nothing is edited in place."""
    _require_booker(execution.firm, actor)
    if not (reason or "").strip():
        raise InvalidInput("say why the execution is busted", field="reason", code="required")
    with firm_scope(execution.firm), transaction.atomic():
        original = Execution.objects.select_for_update().filter(pk=execution.pk).first()
        if original is None:
            raise NotFound("no such execution in your firm")
        if original.kind != Execution.Kind.TRADE:
            raise IllegalTransition(f"a {original.kind} is not busted", field="kind")
        if Execution.objects.filter(reverses=original).exists():
            raise IllegalTransition(f"execution {original.client_execution_id} is already "
                                    "busted", field="state")
        account = Account.objects.select_for_update().get(pk=original.account_id)
        opposite = Execution.Side.SELL if original.side == Execution.Side.BUY \
            else Execution.Side.BUY
        moved = _post(account=account, instrument=original.instrument,
                      kind=Execution.Kind.BUST, side=opposite, quantity=original.quantity,
                      price=original.price, fees=original.fees, trade_time=timezone.now(),
                      actor=actor, memo=f"bust of {original.client_execution_id}: {reason}",
                      corrects_entries=(original.settlement, original.fee_entry),
                      ledger_kind=LedgerEntry.Kind.CORRECTION, fee_sign=1)
        bust = Execution.objects.create(
            firm=original.firm, client_execution_id=f"{original.client_execution_id}"[:59]
            + "/bust", account=account, instrument=original.instrument,
            kind=Execution.Kind.BUST, side=opposite, quantity=original.quantity,
            price=original.price, fees=original.fees, trade_time=original.trade_time,
            reverses=original, reason=reason.strip()[:300],
            booked_by=actor if actor is not None and actor.pk else None, **moved)
        audit.record(firm=original.firm, actor=actor, event_type="execution.busted", obj=bust,
                     after=_snapshot(bust))
        if corrected is not None:
            if corrected.account_number != account.number:
                raise InvalidInput("a correction books into the same account", field="account")
            replacement, _ = book_execution(firm=original.firm, actor=actor, ticket=corrected,
                                            corrects=original)
            audit.record(firm=original.firm, actor=actor, event_type="execution.corrected",
                         obj=replacement, after={"corrects": original.pk,
                                                 "replacement": replacement.pk,
                                                 "reason": reason.strip()})
    return bust


__all__ = ["BOOKING_ROLES", "OVERRIDE_ROLES", "BookError", "Rejected", "Ticket",
           "book_batch", "book_execution", "bust_execution", "parse_ticket"]
