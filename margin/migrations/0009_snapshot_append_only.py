"""Margin snapshots are append-only history: a trigger refuses UPDATE and DELETE on
PostgreSQL and SQLite, as on the audit table (the model and queryset guards stop the ORM).

On SQLite, a migration that alters this table rebuilds it, which drops its triggers: such a
migration must end with ``append_only("margin_marginsnapshot")`` again.
"""

from django.db import migrations

from brokerage.append_only import append_only


class Migration(migrations.Migration):

    dependencies = [
        ("margin", "0008_snapshot_inputs"),
    ]

    operations = [append_only("margin_marginsnapshot")]
