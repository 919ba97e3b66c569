from django.db import migrations

from brokerage.append_only import append_only


class Migration(migrations.Migration):
    dependencies = [("brokerage", "0001_initial")]
    operations = [append_only("brokerage_auditevent")]
