"""Print the public half of the audit signing key (PEM), to publish with the installation:
whoever holds it verifies checkpoints and export manifests (`verify_audit_chain --export`)."""

from django.core.management.base import BaseCommand

from brokerage.audit_keys import public_key_hex, public_key_pem


class Command(BaseCommand):
    help = "Print the Ed25519 public key that verifies audit checkpoints and export manifests."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--hex", action="store_true", help="the raw key as 64 hex characters")

    def handle(self, *args, **options) -> None:
        self.stdout.write(public_key_hex() if options["hex"] else public_key_pem(), ending="\n"
                          if options["hex"] else "")
