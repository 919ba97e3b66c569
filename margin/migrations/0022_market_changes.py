"""The market change log (``MarketChange``) and the triggers that write it.

On PostgreSQL every row inserted, updated or deleted in the instrument, price-observation and
implied-volatility tables logs its instrument with the writing transaction's id
(``pg_current_xact_id``), in the same transaction: a worker's kept market data
(``margin.market_cache``) reads again what transactions it could not see changed. SQLite (the
embedded demo) keeps no market data across chunks and has no triggers.
"""

from django.db import migrations, models

#: table -> (the kind logged, the column naming the instrument)
LOGGED = {
    "accounts_instrument": ("instrument", "id"),
    "margin_priceobservation": ("price", "instrument_id"),
    "margin_impliedvolatility": ("vol", "instrument_id"),
}


def log_changes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, (kind, column) in LOGGED.items():
        schema_editor.execute(f"""
            CREATE OR REPLACE FUNCTION {table}_market_change() RETURNS trigger AS $$
            BEGIN
                INSERT INTO margin_marketchange (txid, instrument_id, kind, logged_at)
                VALUES (pg_current_xact_id()::text::bigint,
                        CASE WHEN TG_OP = 'DELETE' THEN OLD.{column} ELSE NEW.{column} END,
                        '{kind}', clock_timestamp());
                RETURN NULL;
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER {table}_market_change AFTER INSERT OR UPDATE OR DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION {table}_market_change();
        """)


def unlog_changes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in LOGGED:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_market_change ON {table};"
                              f"DROP FUNCTION IF EXISTS {table}_market_change();")


class Migration(migrations.Migration):

    dependencies = [
        ("accounts", "0003_account_intraday_regime"),
        ("margin", "0021_intraday_observations"),
    ]

    operations = [
        migrations.CreateModel(
            name="MarketChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("txid", models.BigIntegerField(db_index=True)),
                ("instrument_id", models.BigIntegerField()),
                ("kind", models.CharField(choices=[("instrument", "Instrument"),
                                                   ("price", "Price"),
                                                   ("vol", "Implied volatility")],
                                          max_length=10)),
                ("logged_at", models.DateTimeField()),
            ],
        ),
        migrations.CreateModel(
            name="MarketChangeHorizon",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("pruned_through", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(log_changes, unlog_changes),
    ]
