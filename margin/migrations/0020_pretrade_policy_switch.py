"""The pre-trade check's policy switch and the exercise threshold at expiry (issue 13): every
call-policy version written before them gains the rows at the platform's values, so
``CallPolicy.value`` reads them on every version."""

from django.db import migrations

ROWS = {
    "reject_increasing_orders_past_due": {
        "value": "1", "source": "R",
        "citation": "FINRA 4210(g)(10) [R]: a PM deficiency not met by its due date, no new "
                    "opening orders except risk-reducing ones"},
    "occ_exercise_threshold": {
        "value": "0.01", "source": "P*",
        "citation": "OCC Rules 805: exercise by exception of options $0.01 or more in the money "
                    "at expiry"},
}


def add_switch(apps, schema_editor):
    CallPolicy = apps.get_model("margin", "CallPolicy")
    for policy in CallPolicy._base_manager.all():
        missing = {name: dict(row) for name, row in ROWS.items() if name not in policy.rows}
        if missing:
            policy.rows = {**policy.rows, **missing}
            policy.save(update_fields=["rows"])


def drop_switch(apps, schema_editor):
    CallPolicy = apps.get_model("margin", "CallPolicy")
    for policy in CallPolicy._base_manager.all():
        if set(ROWS) & set(policy.rows):
            policy.rows = {k: v for k, v in policy.rows.items() if k not in ROWS}
            policy.save(update_fields=["rows"])


class Migration(migrations.Migration):

    dependencies = [
        ("margin", "0019_executions"),
    ]

    operations = [migrations.RunPython(add_switch, drop_switch)]
