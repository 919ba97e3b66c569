"""The margin calculator (CALCULATOR.md): a request in, every requirement explained out.

Both doors, ``python manage.py margin_calc FILE|-`` and ``POST /api/v1/margin/calculate``,
call `run` and print its bytes unchanged, so they are byte-identical. Nothing here touches the
database or Django: the calculator is parse -> engine blocks -> render, on the platform's
default parameter set.
"""

from __future__ import annotations

from margin.engine.parameters import load_parameter_set

from .compute import calculate
from .parse import CalculatorError, parse_request
from .render import render, render_errors

OK = 200
BAD_REQUEST = 400

__all__ = ["BAD_REQUEST", "OK", "CalculatorError", "calculate", "error_body", "parse_request",
           "render", "render_errors", "run"]


def run(raw: bytes | str) -> tuple[int, bytes]:
    """``(200, result bytes)`` or ``(400, {"errors": [...]} bytes)`` for one request body."""
    params = load_parameter_set()
    try:
        portfolio = parse_request(raw, params)
        result = calculate(portfolio, params)
    except CalculatorError as exc:
        return BAD_REQUEST, render_errors(exc.errors)
    return OK, render(result)


def error_body(field: str, code: str, message: str) -> bytes:
    """An errors body for a failure before the request could be read (same format)."""
    return render_errors([{"field": field, "code": code, "message": message}])
