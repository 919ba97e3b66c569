"""Export the audit trail to a file, with its signed manifest beside it.

    manage.py export_audit_trail --firm SLUG --user COMPLIANCE_USER --output FILE
    manage.py export_audit_trail --all-firms --user AUDITOR --reason "..." --output FILE
        [--since YYYY-MM-DD] [--until YYYY-MM-DD] [--event-type TYPE ...]
        [--file-format csv|jsonl] [--manifest FILE (default: FILE.manifest.json)]

Both are recorded in the audit trail themselves (the cross-firm one on the platform chain, with
its reason). A third party checks the pair with `verify_audit_chain --export FILE --manifest
FILE --public-key FILE`.
"""

import json
from datetime import date
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from brokerage import audit
from brokerage.errors import DomainError
from brokerage.models import Firm
from brokerage.roles import Role
from brokerage.tenancy import firm_of, is_platform_auditor, role_of


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD)") from None


class Command(BaseCommand):
    help = "Export the audit trail with a signed manifest (one firm, or every firm for an auditor)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="who is exporting (audited)")
        parser.add_argument("--firm", help="slug of the firm to export")
        parser.add_argument("--all-firms", action="store_true")
        parser.add_argument("--reason", default="")
        parser.add_argument("--output", required=True, help="the file to write")
        parser.add_argument("--manifest", help="where the manifest goes (FILE.manifest.json)")
        parser.add_argument("--since", type=_day, help="first day (inclusive)")
        parser.add_argument("--until", type=_day, help="last day (inclusive)")
        parser.add_argument("--event-type", action="append", default=[], dest="event_types")
        parser.add_argument("--file-format", choices=audit.FILE_FORMATS, default="jsonl")

    def handle(self, *args, **options) -> None:
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"unknown user {options['user']!r}")
        output = Path(options["output"])
        manifest_path = Path(options["manifest"] or f"{output}.manifest.json")
        try:
            export = self._start(user, options)
        except DomainError as exc:
            raise CommandError(str(exc)) from None
        with open(output, "wb") as handle:
            for line in audit.export_lines(export):
                handle.write(line)
        text = audit.export_manifest_text(export)
        manifest_path.write_text(text)
        manifest = json.loads(text)
        self.stdout.write(f"{output}: {manifest['file']['rows']} rows; manifest {manifest_path}"
                          f"{'' if manifest['verified'] else ' (the chain did NOT verify)'}")

    def _start(self, user, options):
        if options["all_firms"]:
            if not is_platform_auditor(user):
                raise CommandError("only a platform auditor exports across firms")
            if not options["reason"]:
                raise CommandError("--reason is required for a cross-firm export")
            request = audit.ExportRequest(
                file_format=options["file_format"], since=options["since"],
                until=options["until"], event_types=tuple(options["event_types"]))
            return audit.start_cross_firm_export(actor=user, reason=options["reason"],
                                                 request=request)
        firm = Firm.objects.filter(slug=options["firm"] or "").first()
        if firm is None:
            raise CommandError(f"unknown firm {options['firm']!r}")
        if firm_of(user) != firm or role_of(user) not in (Role.COMPLIANCE, Role.FIRM_ADMIN):
            raise CommandError("only the firm's compliance officer or admin exports its trail")
        request = audit.ExportRequest(
            file_format=options["file_format"], since=options["since"], until=options["until"],
            event_types=tuple(options["event_types"]), time_zone=firm.time_zone)
        return audit.start_firm_export(firm=firm, actor=user, request=request)
