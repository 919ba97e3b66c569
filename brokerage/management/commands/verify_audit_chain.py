"""Verify the audit trail, or an export of it offline.

    manage.py verify_audit_chain [--firm SLUG]
        every chain (or one firm's) against the HMAC key and the latest signed checkpoints in
        AUDIT_ANCHOR_DIR; exit 1 naming each break
    manage.py verify_audit_chain --export FILE --manifest FILE --public-key FILE
        an export against its signed manifest and the published public key: no database, no
        secret (a third party runs this)
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from brokerage.export_check import check_files


class Command(BaseCommand):
    help = "Verify the audit chains (or an export offline); exit 1 on any break."
    requires_system_checks: list[str] = []  # the offline check touches no database

    def add_arguments(self, parser) -> None:
        parser.add_argument("--firm", help="slug of one firm (default: every chain)")
        parser.add_argument("--export", help="an exported file (csv or jsonl)")
        parser.add_argument("--manifest", help="its manifest (JSON)")
        parser.add_argument("--public-key", help="the installation's public key (PEM or hex)")

    def handle(self, *args, **options) -> None:
        offline = [options["export"], options["manifest"], options["public_key"]]
        if any(offline):
            if not all(offline):
                raise CommandError("--export, --manifest and --public-key go together")
            self._offline(*(Path(p) for p in offline))
        else:
            self._database(options["firm"])

    def _offline(self, export: Path, manifest: Path, public_key: Path) -> None:
        for path in (export, manifest, public_key):
            if not path.is_file():
                raise CommandError(f"{path}: no such file")
        try:
            problems = check_files(export, manifest, public_key)
        except (ValueError, KeyError) as exc:
            raise CommandError(f"cannot read the manifest or the key: {exc}") from None
        for problem in problems:
            self.stdout.write(f"FAILED: {problem}")
        if problems:
            raise CommandError("the export does not verify", returncode=1)
        self.stdout.write(f"{export}: OK (matches its signed manifest)")

    def _database(self, slug: str | None) -> None:
        from brokerage.audit import chain_key, verify_all
        from brokerage.models import AuditEvent, Firm

        chains = None
        if slug:
            try:
                chains = [chain_key(Firm.objects.get(slug=slug))]
            except Firm.DoesNotExist:
                raise CommandError(f"unknown firm {slug!r}") from None
        result = verify_all(chains)
        for problem in result.anchor_problems:
            self.stdout.write(f"anchor {problem.file}: BROKEN: {problem.reason}")
        for chain, broken in result.chains.items():
            if broken is None:
                count = AuditEvent.objects.filter(chain=chain).count()
                checkpoint = result.checkpoints.get(chain)
                seen = (f", checkpoint #{checkpoint.seq} of {checkpoint.taken_at}"
                        if checkpoint else ", no checkpoint yet")
                self.stdout.write(f"{chain}: OK ({count} events{seen})")
            else:
                self.stdout.write(f"{chain}: BROKEN at event #{broken.seq}: {broken.reason}")
        if not result.ok:
            raise CommandError("audit chain verification failed", returncode=1)
