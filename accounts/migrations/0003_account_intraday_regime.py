"""Accounts gain their intraday regime (FINRA 4210(d)(2), MARGIN_CALLS.md section 5): existing
accounts take their firm's choice (``Firm.intraday_regime``), as new ones do when opened."""

from django.db import migrations, models


def to_firm_choice(apps, schema_editor) -> None:
    Account = apps.get_model("accounts", "Account")
    Firm = apps.get_model("brokerage", "Firm")
    for firm_id, regime in Firm.objects.values_list("pk", "intraday_regime"):
        Account.objects.filter(firm_id=firm_id).update(regime=regime)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_ledger_append_only'),
        ('brokerage', '0007_firm_intraday_regime'),
    ]

    operations = [
        migrations.AddField(
            model_name='account',
            name='regime',
            field=models.CharField(choices=[('legacy_pdt', 'Legacy pattern-day-trader treatment'), ('intraday', 'Intraday margin standard')], default='legacy_pdt', help_text='intraday margin monitoring applies to intraday Reg T accounts only (margin.intraday)', max_length=12),
        ),
        migrations.RunPython(to_firm_choice, migrations.RunPython.noop),
    ]
