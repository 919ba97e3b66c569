"""The pre-trade check's policy switch (issue 13): every call-policy version written before it
gains the row at the platform's value, so ``CallPolicy.value`` reads it on every version."""

from django.db import migrations

ROW = "reject_increasing_orders_past_due"
PLATFORM = {"value": "1", "source": "R",
            "citation": "FINRA 4210(g)(10) [R]: a PM deficiency not met by its due date, no new "
                        "opening orders except risk-reducing ones"}


def add_switch(apps, schema_editor):
    CallPolicy = apps.get_model("margin", "CallPolicy")
    for policy in CallPolicy._base_manager.all():
        if ROW not in policy.rows:
            policy.rows = {**policy.rows, ROW: dict(PLATFORM)}
            policy.save(update_fields=["rows"])


def drop_switch(apps, schema_editor):
    CallPolicy = apps.get_model("margin", "CallPolicy")
    for policy in CallPolicy._base_manager.all():
        if ROW in policy.rows:
            policy.rows = {k: v for k, v in policy.rows.items() if k != ROW}
            policy.save(update_fields=["rows"])


class Migration(migrations.Migration):

    dependencies = [
        ("margin", "0019_executions"),
    ]

    operations = [migrations.RunPython(add_switch, drop_switch)]
