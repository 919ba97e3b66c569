"""Database triggers that make a table append-only (UPDATE and DELETE raise).

The model and queryset guards stop the ORM; these stop raw SQL too. A test that proves the
audit verifier catches tampering disables the trigger inside its own transaction first.
"""

from __future__ import annotations

from django.db import migrations


def _forward(table: str):
    def apply(apps, schema_editor) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(f"""
                CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
                BEGIN
                    RAISE EXCEPTION '{table} is append-only: %% refused', TG_OP;
                END;
                $$ LANGUAGE plpgsql;
                CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION {table}_append_only();
            """)
        elif vendor == "sqlite":
            for op in ("UPDATE", "DELETE"):
                schema_editor.execute(f"""
                    CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only: {op} refused'); END;
                """)
    return apply


def _backward(table: str):
    def revert(apps, schema_editor) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table};"
                                  f"DROP FUNCTION IF EXISTS {table}_append_only();")
        elif vendor == "sqlite":
            for op in ("update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_{op};")
    return revert


def append_only(table: str) -> migrations.RunPython:
    return migrations.RunPython(_forward(table), _backward(table))
