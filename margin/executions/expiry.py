"""Option expiry and assignment at the end of day (the end-of-day run calls ``settle_expiries``).

Every option position whose expiry is on or before the session closes:

- out of the money, or in the money by less than the firm's exercise threshold (OCC's
  exercise by exception: $0.01 by default, call policy ``occ_exercise_threshold``): removed at
  zero (an ``expiry`` execution at price 0);
- an equity option in the money by the threshold or more: a long one is exercised, a short one
  assigned, into stock at the strike (an ``exercise`` or ``assignment`` execution closing the
  option at 0, and a ``delivery`` execution of quantity x multiplier shares at the strike,
  linked to it); at expiry American and European exercise alike (the style is recorded);
- an index option in the money: cash-settled at its intrinsic value (an ``exercise`` or
  ``assignment`` closing it at intrinsic).

Moneyness is the underlying's latest price against the strike (a call's ``S - K``, a put's
``K - S``). Each booking is audited and moves the book through ``accounts.services``; its
client execution id is derived from the session, account and contract, so a repeated run books
nothing twice.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from accounts.models import Account, Instrument, Position
from brokerage import audit
from brokerage.models import Firm
from brokerage.scope import firm_scope

from ..calls.models import CallPolicy
from ..calls.policy import default_rows, typed
from ..market_data import latest_prices
from .models import Execution
from .services import _post, _snapshot

EK = Execution.Kind


def exercise_threshold(firm: Firm) -> Decimal:
    active = CallPolicy.objects.filter(firm=firm, status=CallPolicy.Status.ACTIVE).first()
    rows = {**default_rows(), **(active.rows if active else {})}
    return typed("occ_exercise_threshold", rows["occ_exercise_threshold"]["value"])


def _book(*, account: Account, instrument: Instrument, kind: str, side: str,
          quantity: Decimal, price: Decimal, when, ident: str, reason: str,
          origin: Execution | None = None) -> Execution:
    moved = _post(account=account, instrument=instrument, kind=kind, side=side,
                  quantity=quantity, price=price, fees=Decimal(0), trade_time=when, actor=None,
                  memo=f"{kind} {ident}")
    execution = Execution.objects.create(
        firm=account.firm, client_execution_id=ident, account=account, instrument=instrument,
        kind=kind, side=side, quantity=quantity, price=price, trade_time=when, reason=reason,
        origin=origin, **moved)
    audit.record(firm=account.firm, actor=None, event_type=f"execution.{kind}", obj=execution,
                 after=_snapshot(execution))
    return execution


def settle_expiries(*, firm: Firm, session: date) -> list[Execution]:
    """Close the firm's option positions expiring on or before ``session`` (module docstring);
    inside the caller's transaction. The bookings made (none on a repeated run)."""
    booked: list[Execution] = []
    with firm_scope(firm), transaction.atomic():
        positions = list(Position.objects.select_for_update().filter(
            instrument__kind__in=Instrument.OPTION_KINDS, instrument__expiry__lte=session)
            .exclude(quantity=0).select_related("account", "instrument").order_by("pk"))
        if not positions:
            return booked
        threshold = exercise_threshold(firm)
        spots = latest_prices({p.instrument.underlying_id for p in positions})
        when = timezone.now()
        for position in positions:
            booked += _settle(position, spots, threshold, session, when)
    return booked


def _settle(position: Position, spots: dict, threshold: Decimal, session: date,
            when) -> list[Execution]:
    option, account = position.instrument, position.account
    ident = f"eod:{session:%Y%m%d}:{account.pk}:{option.pk}"
    if Execution.objects.filter(client_execution_id=ident).exists():
        return []
    quantity = abs(position.quantity)
    long = position.quantity > 0
    closing = Execution.Side.SELL if long else Execution.Side.BUY
    spot = spots.get(option.underlying_id)
    strike = Decimal(option.strike)
    moneyness = None
    if spot is not None:
        price = Decimal(spot.price)
        moneyness = price - strike if option.right == Instrument.Right.CALL else strike - price
    if moneyness is None or moneyness < threshold:
        why = ("no underlying price: expired" if moneyness is None else
               f"{moneyness:f} in the money, under the exercise threshold {threshold}"
               if moneyness > 0 else "out of the money")
        return [_book(account=account, instrument=option, kind=EK.EXPIRY, side=closing,
                      quantity=quantity, price=Decimal(0), when=when, ident=ident,
                      reason=f"expired {option.expiry}: {why}")]
    kind = EK.EXERCISE if long else EK.ASSIGNMENT
    style = option.exercise_style or "american"
    if option.kind != Instrument.Kind.EQUITY_OPTION:
        # cash-settled (index options): closed at intrinsic value
        return [_book(account=account, instrument=option, kind=kind, side=closing,
                      quantity=quantity, price=moneyness, when=when, ident=ident,
                      reason=f"{kind} at expiry {option.expiry} ({style}), cash-settled at "
                             f"intrinsic {moneyness:f}")]
    first = _book(account=account, instrument=option, kind=kind, side=closing,
                  quantity=quantity, price=Decimal(0), when=when, ident=ident,
                  reason=f"{kind} at expiry {option.expiry} ({style}): {moneyness:f} in the "
                         f"money, threshold {threshold}")
    # a long call or a short put takes the stock; a long put or a short call delivers it
    takes = (option.right == Instrument.Right.CALL) == long
    shares = quantity * Decimal(option.multiplier)
    delivery = _book(account=account, instrument=option.underlying, kind=EK.DELIVERY,
                     side=Execution.Side.BUY if takes else Execution.Side.SELL,
                     quantity=shares, price=strike, when=when, ident=f"{ident}:stock",
                     reason=f"stock of the {kind} of {option.symbol} at {strike:f}",
                     origin=first)
    return [first, delivery]
