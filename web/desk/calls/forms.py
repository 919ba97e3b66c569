"""The margin-call desk's forms: they check the shape of what was typed (a positive finite
amount, a date that is not in the past) and name the field; the services judge the rest."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django import forms

from margin.calls.models import CallSatisfaction

M = CallSatisfaction.Manner

#: What the desk records by hand. A cash deposit is booked in the cash ledger and linked to the
#: call from there (margin.calls.receivers); a liquidation comes from booked closing trades and
#: an intraday increase from the intraday margin level, never typed in.
DESK_MANNERS = [(M.CASH, "Cash deposit (booked in the cash ledger)"),
                (M.SECURITIES, M.SECURITIES.label), (M.SMA, M.SMA.label),
                (M.OTHER, M.OTHER.label)]

AMOUNT_ERRORS = {"required": "the amount is required",
                 "invalid": "the amount must be a number of dollars, such as 2500.00",
                 "max_decimal_places": "the amount has at most 2 decimal places (cents)",
                 "max_digits": "the amount is too large",
                 "max_whole_digits": "the amount is too large"}
DATE_ERRORS = {"invalid": "the date must be written YYYY-MM-DD, such as 2026-12-15",
               "required": "the date is required"}


class SatisfactionForm(forms.Form):
    manner = forms.ChoiceField(choices=DESK_MANNERS, error_messages={
        "invalid_choice": "choose how the call was met: cash, securities, SMA or other"})
    amount = forms.DecimalField(max_digits=20, decimal_places=2, error_messages=AMOUNT_ERRORS)
    reference = forms.CharField(max_length=200, strip=True, error_messages={
        "required": "the reference (wire number, transfer id, memo) is required",
        "max_length": "the reference is at most 200 characters"})
    received_on = forms.DateField(required=False, error_messages=DATE_ERRORS,
                                  help_text="blank: today")

    def __init__(self, *args, today: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today = today

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if not amount.is_finite() or amount <= 0:  # NaN and infinities are refused above
            raise forms.ValidationError("the amount must be more than zero")
        return amount

    def clean_received_on(self) -> date | None:
        received = self.cleaned_data.get("received_on")
        if received is not None and received > self.today:
            raise forms.ValidationError(f"{received} is in the future: record what was "
                                        "received")
        return received


class ExtensionForm(forms.Form):
    new_due_date = forms.DateField(error_messages=DATE_ERRORS)
    reason_code = forms.CharField(max_length=20, strip=True, error_messages={
        "required": "the REX reason code is required",
        "max_length": "the REX reason code is at most 20 characters"})
    reason = forms.CharField(max_length=2000, strip=True, error_messages={
        "required": "say why more time is needed (kept with the request)"})

    def __init__(self, *args, today: date, due_date: date, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.today, self.due_date = today, due_date

    def clean_new_due_date(self) -> date:
        new = self.cleaned_data["new_due_date"]
        if new < self.today:
            raise forms.ValidationError(f"{new} is in the past")
        if new <= self.due_date:
            raise forms.ValidationError(f"{new} is not after the call's due date "
                                        f"({self.due_date})")
        return new


DECISIONS = [("approve", "Approve"), ("reject", "Reject")]


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=DECISIONS, error_messages={
        "required": "approve or reject", "invalid_choice": "approve or reject"})
    reason = forms.CharField(max_length=2000, required=False, strip=True)

    @property
    def approve(self) -> bool:
        return self.cleaned_data["decision"] == "approve"


class OutcomeForm(forms.Form):
    outcome = forms.ChoiceField(choices=[("granted", "Granted"), ("denied", "Denied")],
                                error_messages={"required": "granted or denied",
                                                "invalid_choice": "granted or denied"})
    filing_id = forms.CharField(max_length=40, required=False, strip=True)


class WaiverForm(forms.Form):
    reason = forms.CharField(max_length=2000, strip=True, error_messages={
        "required": "say why the restriction is waived (kept on file)"})


def form_errors(form: forms.Form) -> str:
    """The form's problems in words, each naming its field."""
    said = []
    for field, errors in form.errors.items():
        label = ""
        if field in form.fields:
            label = form.fields[field].label or field.replace("_", " ")
        said += [f"{label}: {e}" if label else str(e) for e in errors]
    return "; ".join(said)
