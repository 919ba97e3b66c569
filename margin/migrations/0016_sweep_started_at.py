from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('margin', '0015_version_sequence'),
    ]

    operations = [
        migrations.AddField(
            model_name='sweepstate',
            name='last_sweep_at',
            field=models.DateTimeField(blank=True, help_text='when the last sweep started (null: none yet)', null=True),
        ),
    ]
