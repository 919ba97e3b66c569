"""Verify every audit chain (or one firm's) and report the first broken link."""

from django.core.management.base import BaseCommand, CommandError

from brokerage.audit import chain_key, verify_chain
from brokerage.models import AuditChainHead, AuditEvent, Firm


class Command(BaseCommand):
    help = "Verify the hash chains of the audit trail; exit 1 at the first broken link."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--firm", help="slug of one firm (default: every chain)")

    def handle(self, *args, **options) -> None:
        if options["firm"]:
            try:
                chains = [chain_key(Firm.objects.get(slug=options["firm"]))]
            except Firm.DoesNotExist:
                raise CommandError(f"unknown firm {options['firm']!r}") from None
        else:
            chains = sorted(set(AuditChainHead.objects.values_list("chain", flat=True))
                            | set(AuditEvent.objects.values_list("chain", flat=True).distinct()))
        broken = False
        for chain in chains:
            result = verify_chain(chain)
            if result is None:
                count = AuditEvent.objects.filter(chain=chain).count()
                self.stdout.write(f"{chain}: OK ({count} events)")
            else:
                broken = True
                self.stdout.write(f"{chain}: BROKEN at event #{result.seq}: {result.reason}")
        if broken:
            raise CommandError("audit chain verification failed", returncode=1)
