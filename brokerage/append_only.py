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


def drop_append_only(table: str) -> migrations.RunPython:
    """The reverse of `append_only` as an operation (a migration that rewrites rows once, under
    its own control, drops the triggers and puts them back with `append_only`)."""
    return migrations.RunPython(_backward(table), _forward(table))


def _head_forward(table: str, events: str):
    moves_forward = (f"NEW.chain = OLD.chain AND NEW.seq = OLD.seq + 1 AND EXISTS (SELECT 1 FROM "
                     f"{events} e WHERE e.chain = NEW.chain AND e.seq = NEW.seq "
                     f"AND e.hash = NEW.last_hash)")
    starts_empty = "NEW.seq = 0 AND NEW.last_hash = '" + "0" * 64 + "'"

    def apply(apps, schema_editor) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(f"""
                CREATE OR REPLACE FUNCTION {table}_forward_only() RETURNS trigger AS $$
                BEGIN
                    IF TG_OP = 'DELETE' THEN
                        RAISE EXCEPTION '{table} is append-only: DELETE refused';
                    ELSIF TG_OP = 'INSERT' AND NOT ({starts_empty}) THEN
                        RAISE EXCEPTION '{table} is append-only: a chain starts empty';
                    ELSIF TG_OP = 'UPDATE' AND NOT ({moves_forward}) THEN
                        RAISE EXCEPTION '{table} is append-only: a head only moves to its '
                                        'chain''s next event (UPDATE refused)';
                    END IF;
                    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
                END;
                $$ LANGUAGE plpgsql;
                CREATE TRIGGER {table}_forward_only BEFORE INSERT OR UPDATE OR DELETE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION {table}_forward_only();
            """)
        elif vendor == "sqlite":
            schema_editor.execute(f"""
                CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
                BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;""")
            schema_editor.execute(f"""
                CREATE TRIGGER {table}_starts_empty BEFORE INSERT ON {table}
                WHEN NOT ({starts_empty})
                BEGIN SELECT RAISE(ABORT, '{table} is append-only: a chain starts empty'); END;""")
            schema_editor.execute(f"""
                CREATE TRIGGER {table}_forward_only BEFORE UPDATE ON {table}
                WHEN NOT ({moves_forward})
                BEGIN SELECT RAISE(ABORT, '{table} is append-only: a head only moves to its chain''s next event (UPDATE refused)'); END;""")  # noqa: E501
    return apply


def _head_backward(table: str):
    def revert(apps, schema_editor) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_forward_only ON {table};"
                                  f"DROP FUNCTION IF EXISTS {table}_forward_only();")
        elif vendor == "sqlite":
            for name in ("no_delete", "starts_empty", "forward_only"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_{name};")
    return revert


def forward_only_head(table: str, events: str) -> migrations.RunPython:
    """Triggers for a chain-head table: never deleted, created empty, and moved only to the
    next event of its own chain (the event must exist with that hash). Rolling a head back to
    hide removed events takes dropping these first, as it does for the events themselves."""
    return migrations.RunPython(_head_forward(table, events), _head_backward(table))
