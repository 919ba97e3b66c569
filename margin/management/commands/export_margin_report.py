"""The daily margin report of one firm as CSV, for compliance: each account's requirement,
equity and excess as the day ended and its open margin calls (stdout, or --output FILE)."""

from margin.calls.record import account_csv
from margin.management.daily_csv import DailyCsvCommand


class Command(DailyCsvCommand):
    help = "Print the daily margin report: per account requirement, equity, excess, open calls."
    render = staticmethod(account_csv)
