"""The intraday record (margin.intraday) and one intraday call per deficit day.

``IntradayObservation`` is append-only once committed: one row per transaction of the book,
written with the transaction's first write and completed by its next ones (an execution's
position and cash). On PostgreSQL a trigger stamps each row with the top-level transaction that
inserts it and refuses an UPDATE from any other transaction, and every DELETE; on SQLite (the
embedded demo) DELETE is refused, the model guards stop the rest.
"""

import brokerage.models
import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models

TABLE = "margin_intradayobservation"


def guard(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"""
            CREATE OR REPLACE FUNCTION {TABLE}_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    NEW.database_transaction := pg_current_xact_id()::text;
                    RETURN NEW;
                END IF;
                IF TG_OP = 'UPDATE'
                        AND OLD.database_transaction = pg_current_xact_id()::text
                        AND NEW.database_transaction = OLD.database_transaction
                        AND NEW.account_id = OLD.account_id
                        AND NEW.transaction = OLD.transaction THEN
                    RETURN NEW;  -- the writing transaction completing its own row
                END IF;
                RAISE EXCEPTION '{TABLE} is append-only: %% refused', TG_OP;
            END;
            $$ LANGUAGE plpgsql;
            CREATE TRIGGER {TABLE}_append_only BEFORE INSERT OR UPDATE OR DELETE ON {TABLE}
                FOR EACH ROW EXECUTE FUNCTION {TABLE}_append_only();
        """)
    elif vendor == "sqlite":
        schema_editor.execute(f"""
            CREATE TRIGGER {TABLE}_no_delete BEFORE DELETE ON {TABLE}
            BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused'); END;
        """)


def unguard(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_append_only ON {TABLE};"
                              f"DROP FUNCTION IF EXISTS {TABLE}_append_only();")
    elif vendor == "sqlite":
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_no_delete;")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0003_account_intraday_regime'),
        ('brokerage', '0007_firm_intraday_regime'),
        ('margin', '0020_pretrade_policy_switch'),
    ]

    operations = [
        migrations.CreateModel(
            name='IntradayObservation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('session', models.DateField(help_text='the business day the transaction belongs to')),
                ('transaction', models.CharField(help_text="the database transaction's token", max_length=64)),
                ('database_transaction', models.CharField(blank=True, editable=False, help_text='PostgreSQL: the top-level transaction id that wrote it (set by the database; the append-only trigger lets only that transaction complete it)', max_length=24)),
                ('occurred_at', models.DateTimeField(help_text="when it happened: the cash entries' effective time, else when it was booked")),
                ('equity', models.DecimalField(decimal_places=2, max_digits=20)),
                ('maintenance', models.DecimalField(decimal_places=2, help_text='4210(c) maintenance requirement', max_digits=20)),
                ('level', models.DecimalField(decimal_places=2, help_text='IML after: equity - maintenance', max_digits=20)),
                ('level_before', models.DecimalField(blank=True, decimal_places=2, help_text='IML before, at the same prices; null: not known (a writer that did not say what moved)', max_digits=20, null=True)),
                ('reducing', models.BooleanField(help_text='an IML-reducing transaction (it lowered the IML, or withdrew cash)')),
                ('traded', models.BooleanField(default=False, help_text='a position moved')),
                ('net_deposits', models.DecimalField(decimal_places=2, default=0, help_text='deposits less withdrawals in it', max_digits=20)),
                ('changes', models.JSONField(default=list, help_text='what moved, as the writer said')),
                ('recorded_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['account', 'session', 'occurred_at', 'id'],
                'abstract': False,
                'base_manager_name': 'cross_firm',
            },
            bases=(brokerage.models.AppendOnlyRecord, models.Model),
            managers=[
                ('objects', django.db.models.manager.Manager()),
                ('cross_firm', django.db.models.manager.Manager()),
            ],
        ),
        migrations.RemoveConstraint(
            model_name='margincall',
            name='one_open_call_per_account_and_kind',
        ),
        migrations.AddConstraint(
            model_name='margincall',
            constraint=models.UniqueConstraint(condition=models.Q(models.Q(('kind__in', ['reg_t', 'intraday']), _negated=True), ('status__in', ['issued', 'partially_met', 'extended', 'overdue', 'liquidation_pending', 'liquidated'])), fields=('account', 'kind'), name='one_open_call_per_account_and_kind'),
        ),
        migrations.AddConstraint(
            model_name='margincall',
            constraint=models.UniqueConstraint(condition=models.Q(('kind', 'intraday')), fields=('account', 'as_of'), name='one_intraday_call_per_deficit_day'),
        ),
        migrations.AddField(
            model_name='intradayobservation',
            name='account',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.account'),
        ),
        migrations.AddField(
            model_name='intradayobservation',
            name='firm',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='brokerage.firm'),
        ),
        migrations.AddIndex(
            model_name='intradayobservation',
            index=models.Index(fields=['account', 'session'], name='margin_intr_account_e7ded3_idx'),
        ),
        migrations.AddConstraint(
            model_name='intradayobservation',
            constraint=models.UniqueConstraint(fields=('account', 'transaction'), name='intraday_observation_per_transaction'),
        ),
        migrations.RunPython(guard, unguard),
    ]
