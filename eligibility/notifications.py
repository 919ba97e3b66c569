"""Mail to the client, rendered inside the transaction and sent only once it commits.

Templates live in templates/eligibility/mail/<name>_subject.txt and <name>.txt. A mail server
failure after commit is logged, never turned into a failed approval (robust on_commit).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string

from accounts.models import Client

log = logging.getLogger(__name__)


def mail_client_on_commit(*, client: Client, template: str, context: dict[str, Any]) -> None:
    full = {"client": client, "firm_name": client.firm.name, **context}
    subject = " ".join(render_to_string(f"eligibility/mail/{template}_subject.txt", full).split())
    body = render_to_string(f"eligibility/mail/{template}.txt", full)
    recipient = client.email

    def send() -> None:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [recipient], fail_silently=False)
        log.info("mailed %s to %s", template, recipient)

    transaction.on_commit(send, robust=True)
