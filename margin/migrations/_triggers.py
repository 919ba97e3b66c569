"""What a migration that alters the snapshot table runs last (0011, 0014): SQLite rebuilds the
table and drops its append-only triggers with it; PostgreSQL alters it in place and keeps them.
(A leading underscore: the migration loader does not take this module for a migration.)"""

from brokerage.append_only import append_only

SNAPSHOTS = "margin_marginsnapshot"


def triggers_again_on_sqlite(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    for op in ("update", "delete"):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {SNAPSHOTS}_no_{op};")
    append_only(SNAPSHOTS).code(apps, schema_editor)
