"""Extensions of a call (MARGIN_CALLS.md sections 1, 2, 6, 9 and 10).

Reg T and FINRA maintenance calls: the firm's decision to ask its examining authority for more
time is made by two people (``brokerage.approvals``, kind ``call_extension``), then whoever
hears back records the outcome with the REX fields (nothing is filed with a regulator from
here). House calls: the extension is granted inside the firm by the same two people. Intraday,
collateral and PM calls have none. An extension is asked for before the call is due.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from brokerage import approvals, audit
from brokerage.errors import IllegalTransition, NotFound
from brokerage.models import ApprovalRequest
from brokerage.scope import lock_in_firm

from .. import business_days
from .models import CallExtension, MarginCall
from .notices import notify
from .services import RUNNING, CallError, _write, lock_call, require_staff

APPROVAL_KIND = "call_extension"
E = CallExtension.State
AUTHORITY = {"reg_t": CallExtension.Authority.FINRA,
             "maintenance": CallExtension.Authority.FINRA,
             "house": CallExtension.Authority.HOUSE}


def request_extension(*, call: MarginCall, actor, days: int, reason_code: str,
                      comment: str = "", today: date | None = None) -> CallExtension:
    """Propose asking for ``days`` more business days; a second person decides."""
    require_staff(actor, call.firm, "propose an extension")
    if actor is None:
        raise CallError("an extension is proposed by a person", field="actor")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 30:
        raise CallError("days: a whole number of business days from 1 to 30", field="days")
    if not (reason_code or "").strip():
        raise CallError("the REX reason code is required", field="reason_code")
    authority = AUTHORITY.get(call.kind)
    if authority is None:
        raise IllegalTransition(f"a {call.get_kind_display()} has no extension (rule book "
                                "section 10)", field="kind")
    with transaction.atomic():
        call = lock_call(call)
        today = today or business_days.today(call.calendar)
        if call.status not in RUNNING:
            raise IllegalTransition(f"call #{call.pk} is {call.status}: only a running call is "
                                    "extended", field="status")
        if today > call.due_date:
            raise IllegalTransition(f"call #{call.pk} was due {call.due_date}: an extension is "
                                    "asked for before the due date", field="due_date")
        if call.extensions.filter(state__in=[E.PROPOSED, E.REQUESTED]).exists():
            raise IllegalTransition(f"call #{call.pk} already has an extension in progress",
                                    field="state")
        previous = call.extensions.aggregate(n=Max("request_number"))["n"] or 0
        first = call.extensions.order_by("request_number").first()
        extension = CallExtension.objects.create(
            firm=call.firm, call=call, authority=authority, request_number=previous + 1,
            request_date=first.request_date if first else today, days_requested=days,
            reason_code=reason_code.strip()[:20], comment=comment, due_date_before=call.due_date,
            requested_by=actor, requested_at=timezone.now())
        request = approvals.request_approval(
            kind=APPROVAL_KIND, firm=call.firm, subject=extension, requested_by=actor,
            drafted_on=call.due_date.toordinal(),
            makers=approvals.makers_of((actor, "proposed")),
            summary=f"extend call #{call.pk} by {days} business days")
        audit.record(firm=call.firm, actor=actor, event_type="call_extension.proposed",
                     obj=extension, after={"call": call.pk, "days": days,
                                           "reason_code": extension.reason_code,
                                           "request_number": extension.request_number,
                                           "approval_request": request.pk})
    return extension


def decide_extension(*, extension: CallExtension, actor, approve: bool, reason: str = "",
                     today: date | None = None) -> CallExtension:
    """The second person: approving asks the authority (or, for a house call, grants it)."""
    approvals.decide(request=approvals.request_of(kind=APPROVAL_KIND, subject=extension),
                     decider=actor, approve=approve, reason=reason, today=today)
    return CallExtension.objects.get(pk=extension.pk)


def record_outcome(*, extension: CallExtension, actor, granted: bool, filing_id: str = "",
                   today: date | None = None) -> CallExtension:
    """What the examining authority answered (a FINRA request the firm decided to make)."""
    require_staff(actor, extension.firm, "record an extension's outcome")
    with transaction.atomic():
        extension = lock_in_firm(CallExtension, extension.pk,
                                 missing=NotFound("no such extension in your firm"))
        if extension.state != E.REQUESTED:
            raise IllegalTransition(f"extension {extension.request_number} is "
                                    f"{extension.state}: no answer is awaited", field="state")
        if granted and not (filing_id or "").strip():
            raise CallError("the FINRA Filing ID of the granted request", field="filing_id")
        extension.filing_id = (filing_id or "").strip()[:40]
        extension.outcome_recorded_by = actor
        extension.outcome_on = today or business_days.today(extension.call.calendar)
        if granted:
            _grant(extension, actor)
        else:
            extension.state = E.DENIED
        extension.save()
        audit.record(firm=extension.firm, actor=actor, event_type=f"call_extension.{extension.state}",
                     obj=extension, after={"call": extension.call_id,
                                           "filing_id": extension.filing_id,
                                           "new_due_date": extension.new_due_date})
    return extension


def _grant(extension: CallExtension, actor) -> None:
    call = lock_call(extension.call)
    if call.status not in RUNNING:
        raise IllegalTransition(f"call #{call.pk} is {call.status}: nothing to extend",
                                field="status")
    extension.state = E.GRANTED
    extension.new_due_date = business_days.add_business_days(
        extension.due_date_before, extension.days_requested, call.calendar)
    before = {"status": call.status, "due_date": call.due_date}
    call.status, call.due_date = MarginCall.Status.EXTENDED, extension.new_due_date
    _write(call, event="extended", actor=actor, day=extension.outcome_on or
           business_days.today(call.calendar), before=before, extension=extension.pk)
    notify(call, "extended", key=str(extension.request_number))


# The approval kind ---------------------------------------------------------------------------

def _lock(request: ApprovalRequest) -> CallExtension:
    extension = CallExtension.objects.select_for_update().get(pk=request.subject_id)
    MarginCall.objects.select_for_update().get(pk=extension.call_id)
    return extension


def _authorize(ruling: approvals.Ruling) -> None:
    require_staff(ruling.decider, ruling.subject.firm, f"{ruling.verb} an extension")


def _apply(ruling: approvals.Ruling) -> approvals.Change:
    extension: CallExtension = ruling.subject
    if extension.authority == CallExtension.Authority.HOUSE:
        extension.outcome_on = _today(ruling, extension.call)
        extension.outcome_recorded_by = ruling.decider
        _grant(extension, ruling.decider)  # granted inside the firm
    else:
        extension.state = E.REQUESTED  # the firm asks its examining authority (REX)
    extension.decided_by = ruling.decider
    extension.save()
    return approvals.Change(after={"call": extension.call_id, "state": extension.state,
                                   "new_due_date": extension.new_due_date})


def _reject(ruling: approvals.Ruling) -> approvals.Change:
    extension: CallExtension = ruling.subject
    extension.state, extension.decided_by = E.REJECTED, ruling.decider
    extension.save()
    return approvals.Change(after={"call": extension.call_id, "state": extension.state})


def _today(ruling: approvals.Ruling, call: MarginCall) -> date:
    return ruling.context.get("today") or business_days.today(call.calendar)


def _revalidate(ruling: approvals.Ruling) -> None:
    call = ruling.subject.call
    if call.status not in RUNNING or _today(ruling, call) > call.due_date:
        raise IllegalTransition(f"call #{call.pk} is {call.status}, due {call.due_date}: an "
                                "extension is granted only before the due date", field="status")


approvals.register(approvals.ApprovalKind(
    name=APPROVAL_KIND, subject_model="margin.callextension", audit_prefix="call_extension",
    lock=_lock, current_version=lambda extension: extension.call.due_date.toordinal(),
    describe=lambda extension: f"extension {extension.request_number} of call "
                               f"#{extension.call_id}",
    authorize=_authorize, revalidate=_revalidate, apply=_apply, reject=_reject,
    target="the call's due date", remedy="propose the extension again"))
