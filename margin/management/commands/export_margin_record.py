"""The FINRA 4220 daily margin record of one firm as CSV (stdout, or --output FILE)."""

from margin.calls.record import csv_for
from margin.management.daily_csv import DailyCsvCommand


class Command(DailyCsvCommand):
    help = "Print the FINRA 4220 margin record of a day: each call, amount required, how met."
    render = staticmethod(csv_for)
