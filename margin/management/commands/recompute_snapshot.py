"""`manage.py recompute_snapshot ID [ID ...]`: reproduce stored snapshots from their inputs."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from margin.models import MarginSnapshot
from margin.reproduce import NotReproducible, Reproduction, recompute


class Command(BaseCommand):
    help = (
        "Recompute stored margin snapshots from the inputs they recorded (the positions they "
        "valued, the price, vol, rate and daily-close rows by reference, the parameter-set "
        "version) with the current engine, never from today's book or prices, and print a "
        "field-by-field comparison: money fields must match to the cent, risk arrays within "
        "float32 (the precision they are stored at). Exit 0 when every snapshot matches, 1 "
        "on any difference or a snapshot that cannot be recomputed. A snapshot computed by "
        "another engine version is said to be."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="+", type=int, metavar="ID", help="snapshot id")

    def handle(self, *args, **options) -> None:
        # An operator's check by id, across firms: it reads and writes nothing else.
        snapshots = MarginSnapshot.cross_firm.for_compliance(
            reason="recompute_snapshot: an operator reproduces stored snapshots by id"
        ).select_related("firm", "account", "rate", "parameter_version").in_bulk(options["ids"])
        failed = [str(i) for i in options["ids"] if i not in snapshots]
        for snapshot_id in options["ids"]:
            snapshot = snapshots.get(snapshot_id)
            if snapshot is None:
                self.stdout.write(f"snapshot {snapshot_id}: no such snapshot")
                continue
            try:
                reproduction = recompute(snapshot)
            except NotReproducible as exc:
                self.stdout.write(f"snapshot {snapshot_id}: NOT REPRODUCIBLE: {exc.message}")
                failed.append(str(snapshot_id))
                continue
            self._report(reproduction)
            if not reproduction.matches:
                failed.append(str(snapshot_id))
        if failed:
            raise CommandError(f"snapshots {', '.join(failed)} do not reproduce", returncode=1)

    def _report(self, reproduction: Reproduction) -> None:
        snapshot = reproduction.snapshot
        write = self.stdout.write
        write(f"snapshot {snapshot.pk}: account {snapshot.account.number} ({snapshot.firm.slug}), "
              f"{snapshot.margin_type}, computed {snapshot.computed_at.isoformat()}, "
              f"engine {snapshot.engine_version}")
        if reproduction.engine_note:
            write(f"  {reproduction.engine_note}")
        write(f"  inputs: {reproduction.inputs}")
        width = max(len(f.field) for f in reproduction.fields)
        write(f"  {'field':<{width}}  {'stored':>22}  {'recomputed':>22}")
        for field in reproduction.fields:
            verdict = "ok" if field.matches else "DIFFERS"
            write(f"  {field.field:<{width}}  {field.stored:>22}  {field.recomputed:>22}  "
                  f"{verdict}")
        if reproduction.matches:
            write(f"  MATCH: {len(reproduction.fields)} fields")
        else:
            write(f"  DIFFERS: {', '.join(reproduction.differing)}")
