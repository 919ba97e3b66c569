"""Versions of dirty accounts come from a PostgreSQL sequence (``margin.dirty``): marks run in
the loads' own transactions, where a counter row would make every load queue on its lock. The
sequence starts above every version already handed out. SQLite keeps the counter row."""

from django.db import migrations

SEQUENCE = "margin_version"


def create_sequence(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"CREATE SEQUENCE IF NOT EXISTS {SEQUENCE} AS bigint")
    schema_editor.execute(
        f"SELECT setval('{SEQUENCE}', GREATEST(1, "
        "(SELECT COALESCE(MAX(last_version), 0) FROM margin_sweepstate), "
        "(SELECT COALESCE(MAX(GREATEST(dirty_version, computed_version, claim)), 0) "
        "FROM margin_accountmargin)))")


def drop_sequence(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP SEQUENCE IF EXISTS {SEQUENCE}")


class Migration(migrations.Migration):

    dependencies = [
        ('margin', '0014_snapshot_methods'),
    ]

    operations = [migrations.RunPython(create_sequence, drop_sequence)]
