"""What moved from eligibility's rule set to margin's call policy, shared by the migrations
that move it (0003 converts open deficiencies into calls, 0004 carries the house values).
Not a migration: the loader skips modules whose name starts with an underscore."""

from __future__ import annotations

#: rule-set column -> (call-policy row, the platform value)
MOVED = {"maintenance_equity_minimum": ("pm_minimum_equity", "100000.00"),
         "deficiency_notice_day": ("pm_minimum_equity_notice_day", 1),
         "deficiency_restriction_day": ("pm_minimum_equity_restriction_day", 3),
         "deficiency_conversion_day": ("pm_minimum_equity_downgrade_day", 5)}


def policy_rows(rule_set) -> tuple[dict, bool]:
    """The platform default with the rule set's house values (rows tagged H); whether any
    differs from the platform's."""
    from margin.calls.policy import default_rows

    rows = default_rows()
    changed = False
    for column, (row, default) in MOVED.items():
        value = getattr(rule_set, column)
        if str(value) != str(default):
            rows[row] = {"value": str(value), "source": "H",
                         "citation": f"house policy, from eligibility rule set "
                                     f"v{rule_set.version}"}
            changed = True
    return rows, changed
