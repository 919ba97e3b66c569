"""Export the audit trail as JSON (hashes included, so a reader can re-verify every link).

    manage.py export_audit_trail --firm SLUG --user COMPLIANCE_USER     one firm's chain
    manage.py export_audit_trail --all-firms --user AUDITOR --reason "..."    every chain
Both are recorded in the audit trail themselves.
"""

import json

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from brokerage import audit
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.tenancy import firm_of, is_platform_auditor, role_of


class Command(BaseCommand):
    help = "Export the audit trail (one firm, or every firm for a platform auditor)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="who is exporting (audited)")
        parser.add_argument("--firm", help="slug of the firm to export")
        parser.add_argument("--all-firms", action="store_true")
        parser.add_argument("--reason", default="")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['user']!r}")
        if options["all_firms"]:
            if not is_platform_auditor(user):
                raise CommandError("only a platform auditor exports across firms")
            if not options["reason"]:
                raise CommandError("--reason is required for a cross-firm export")
            document = audit.export_cross_firm(actor=user, reason=options["reason"])
        else:
            firm = Firm.objects.filter(slug=options["firm"] or "").first()
            if firm is None:
                raise CommandError(f"unknown firm {options['firm']!r}")
            if firm_of(user) != firm or role_of(user) not in (Role.COMPLIANCE, Role.FIRM_ADMIN):
                raise CommandError("only the firm's compliance officer or admin exports its trail")
            document = {audit.chain_key(firm): audit.export_for_firm(firm=firm, actor=user)}
        self.stdout.write(json.dumps(document, cls=DjangoJSONEncoder, indent=1))
