"""`manage.py seed_demo`: load the demo (demo/seed.py tells the story) and print its logins."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from demo.seed import seed


class Command(BaseCommand):
    help = "Load the demo data (two firms, staff, clients, books, prices) and compute margin."

    def handle(self, *args, **options) -> None:
        seed(write=self.stdout.write)
