"""Firm.time_zone; PlatformRole; no superusers.

Existing superusers are demoted here rather than converted: a platform role is granted
deliberately and audited (`manage.py create_platform_user` / `platform_user --role`), never
inherited from a flag. Firm members lose nothing (their rights come from their role).
"""

import brokerage.models
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def demote_superusers(apps, schema_editor) -> None:
    User = apps.get_model(*settings.AUTH_USER_MODEL.split("."))
    User.objects.filter(is_superuser=True).update(is_superuser=False)


class Migration(migrations.Migration):

    dependencies = [
        ('brokerage', '0003_approvals'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='firm',
            name='time_zone',
            field=models.CharField(default='America/New_York', help_text='IANA name, e.g. America/New_York or Europe/London', max_length=64, validators=[brokerage.models.validate_time_zone]),
        ),
        migrations.CreateModel(
            name='PlatformRole',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('auditor', 'Platform auditor'), ('market_data', 'Market-data operator')], max_length=32)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='platform_role', to=settings.AUTH_USER_MODEL)),
            ],
        ),
        migrations.RunPython(demote_superusers, migrations.RunPython.noop),
    ]
