"""Notices to the client about a call: recorded once per call and event, mailed on commit.

A ``CallNotice`` row per (call, event key) is the guard against mailing twice: the run that
repeats a day finds the row and sends nothing. Rendering happens inside the transaction, the
mail leaves only when it commits (a mail-server failure after commit is logged, never turned
into a failed transition).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from .models import CallNotice, MarginCall

log = logging.getLogger(__name__)

HEADLINES = {
    "issued": "a margin call was issued",
    "changed": "the amount of a margin call changed",
    "extended": "a margin call was extended",
    "due_tomorrow": "a margin call is due tomorrow",
    "overdue": "a margin call is overdue",
    "restricted": "the account is limited to risk-reducing trades",
    "downgraded": "the account moved to Reg T margin",
    "met": "a margin call was met",
}


def notify(call: MarginCall, event: str, *, key: str = "", detail: str = "") -> bool:
    """Record and (on commit) mail the notice of ``event`` for ``call``; False when it was
    already sent for this key. Runs inside the caller's transaction."""
    event_key = f"{event}:{key}" if key else event
    client = call.account.client
    if CallNotice.objects.filter(call=call, event_key=event_key).exists():
        return False
    context = {"client": client, "firm_name": call.firm.name, "call": call,
               "headline": HEADLINES[event], "detail": detail}
    subject = " ".join(render_to_string("margin/mail/call_notice_subject.txt",
                                        context).split())
    body = render_to_string("margin/mail/call_notice.txt", context)
    CallNotice.objects.create(firm=call.firm, call=call, event=event, event_key=event_key,
                              recipient=client.email or "", subject=subject[:200])
    recipient = client.email

    def send() -> None:
        if recipient:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient],
                      fail_silently=False)
            log.info("mailed %s notice of call %s to %s", event, call.pk, recipient)

    transaction.on_commit(send, robust=True)
    return True
