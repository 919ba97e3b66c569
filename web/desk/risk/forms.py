"""The simulator's GET form: one underlying moved by a percentage, or a named scenario."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms

from margin.engine.errors import EngineInputError
from margin.engine.shock import check_move
from margin.simulation import scenario_choices

MINUS_SIGNS = ("\u2212", "\u2013")  # a pasted minus or dash reads as "-"


class SimulationForm(forms.Form):
    symbol = forms.CharField(required=False, max_length=40, label="Underlying",
                             help_text="a symbol (AAPL) or a class group (SPX: the index, its "
                                       "ETFs and futures)")
    move = forms.CharField(required=False, max_length=20, label="Move in %",
                           help_text="-10 for down 10 %")
    scenario = forms.ChoiceField(required=False, label="or a named stress scenario",
                                 choices=())

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["scenario"].choices = [("", "(none: move the underlying)"),
                                           *scenario_choices()]

    def clean_move(self) -> float | None:
        text = self.cleaned_data["move"].strip().rstrip("%").strip()
        if not text:
            return None
        for sign in MINUS_SIGNS:
            text = text.replace(sign, "-")
        try:
            percent = Decimal(text)
        except InvalidOperation:
            raise forms.ValidationError(
                f"{self.cleaned_data['move']!r} is not a percentage: type e.g. -10") from None
        if not percent.is_finite():
            raise forms.ValidationError("the move must be a finite number of percent")
        try:
            return check_move(float(percent) / 100.0)
        except EngineInputError as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self) -> dict:
        data = super().clean()
        if data.get("scenario") or self.errors:
            return data
        if not data.get("symbol"):
            self.add_error("symbol", "name the underlying to move (or pick a named scenario)")
        if data.get("move") is None:
            self.add_error("move", "give the move in percent, e.g. -10")
        return data
