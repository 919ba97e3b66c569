"""A snapshot records its inputs by reference (positions, market rows, rate, parameter
version, VaR window) and its risk arrays compactly (``margin.risk_arrays``)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('margin', '0007_risk_parameter_status_label'),
    ]

    operations = [
        migrations.AddField(
            model_name='marginsnapshot',
            name='add_ons',
            field=models.JSONField(blank=True, default=dict, help_text='house add-ons and minimum charge, money to the cent'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='history',
            field=models.JSONField(blank=True, help_text='the daily closes VaR used: returns, first and last date of the window, a digest of the closes, and the history flags (null: VaR not asked for)', null=True),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='parameter_version',
            field=models.ForeignKey(blank=True, help_text="the firm's parameter-set version used (none: the platform default named in parameter_set)", null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='margin.riskparameterset'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='positions',
            field=models.JSONField(blank=True, help_text='[[instrument id, quantity, cost basis], ...] as valued, by instrument id (null: written before inputs were recorded)', null=True),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='price_ids',
            field=models.JSONField(blank=True, default=dict, help_text='instrument id -> PriceObservation id used'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='rate',
            field=models.ForeignKey(blank=True, help_text='the rate row used (none: 0)', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='margin.riskfreerate'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='rate_used',
            field=models.DecimalField(blank=True, decimal_places=6, help_text='the rate valued at, as the row held it then', max_digits=10, null=True),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='risk_arrays',
            field=models.JSONField(blank=True, default=dict, help_text='class group -> its P&L at each valuation point, float32 (margin.risk_arrays)'),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='valuation_date',
            field=models.DateField(blank=True, help_text='the date options were aged to (exchange day)', null=True),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='vol_ids',
            field=models.JSONField(blank=True, default=dict, help_text='instrument id -> ImpliedVolatility id used'),
        ),
    ]
