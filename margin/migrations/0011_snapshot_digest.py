"""Snapshots carry a content hash (the chunk's audit event digests them) and why they were kept;
end-of-day runs are recorded once per firm, calendar and session.

Adding columns rebuilds the snapshot table on SQLite, which drops its append-only triggers:
they are applied again at the end (see 0009)."""

import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models

from margin.migrations._triggers import triggers_again_on_sqlite


class Migration(migrations.Migration):

    dependencies = [
        ('brokerage', '0004_platform_roles_time_zone'),
        ('margin', '0010_account_margin'),
    ]

    operations = [
        migrations.AddField(
            model_name='marginsnapshot',
            name='content_hash',
            field=models.CharField(blank=True, help_text="sha256 of the stored fields; the chunk's audit event carries a digest of these, which the audit verifier checks (blank: written before issue 10)", max_length=64),
        ),
        migrations.AddField(
            model_name='marginsnapshot',
            name='reason',
            field=models.CharField(blank=True, help_text='why this valuation was kept as history (margin.snapshots.history_reason): end_of_day, forced, first, excess_sign, requirement_move', max_length=20),
        ),
        migrations.AddField(
            model_name='accountmargin',
            name='end_of_day_due',
            field=models.BooleanField(default=False, help_text='the end-of-day run marked the account: its next valuation is kept as history whatever moved (cleared when written)'),
        ),
        migrations.CreateModel(
            name='EndOfDayRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('session', models.DateField(help_text='the trading day (or crypto day) the run closes')),
                ('calendar', models.CharField(help_text='the exchange calendar, or CRYPTO', max_length=16)),
                ('started_at', models.DateTimeField()),
                ('accounts', models.PositiveIntegerField(default=0, help_text='accounts marked for it')),
                ('firm', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='brokerage.firm')),
            ],
            options={
                'ordering': ['-session'],
                'abstract': False,
                'base_manager_name': 'cross_firm',
                'constraints': [models.UniqueConstraint(fields=('firm', 'calendar', 'session'), name='end_of_day_once_per_session')],
            },
            managers=[
                ('objects', django.db.models.manager.Manager()),
                ('cross_firm', django.db.models.manager.Manager()),
            ],
        ),
        migrations.RunPython(triggers_again_on_sqlite, migrations.RunPython.noop),
    ]
