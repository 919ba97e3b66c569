"""Snapshots record the methods they valued (the requirement's) and stop storing the
calculator's whole response (DESIGN.md "Scale": rendered on demand from the recorded inputs).

Altering the table rebuilds it on SQLite, which drops its append-only triggers: they are applied
again at the end (see 0009 and 0011)."""

from django.db import migrations, models

from margin.migrations._triggers import triggers_again_on_sqlite


class Migration(migrations.Migration):

    dependencies = [
        ('margin', '0013_margin_calls'),
    ]

    operations = [
        migrations.AlterField(
            model_name='marginsnapshot',
            name='result',
            field=models.JSONField(blank=True, help_text="the calculator's whole response (snapshots written before the batch sweep; null since: the explanation is rendered on demand, margin.explain)", null=True),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='methods',
            field=models.JSONField(blank=True, default=list, help_text='the calculator methods valued, the ones the requirement rests on (margin.snapshots.requirement_methods); empty: written before they were recorded, the parameter set\'s snapshot methods'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='health_factor',
            field=models.DecimalField(blank=True, decimal_places=6, help_text='Aave-style health factor of crypto collateral against its debt (null: no debt, or no collateral block); collateral calls rest on it', max_digits=20, null=True),
        ),
        migrations.RunPython(triggers_again_on_sqlite, migrations.RunPython.noop),
    ]
