"""Errors the engine raises for input it cannot value; the calculator turns them into 400s."""

from __future__ import annotations

import re
from collections.abc import Sequence

#: a field's path in the portfolio: keys and list indices (``("positions", 3, "strike")``)
Path = tuple[str | int, ...]
#: an error field naming a position (``positions[3].price``): group 1 is its index
POSITION_FIELD = re.compile(r"^positions\[(\d+)\]")


def render_path(path: Path) -> str:
    """``("positions", 3, "lp", "tick_upper")`` -> ``positions[3].lp.tick_upper``."""
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out = f"{out}.{key}" if out else key
    return out


class EngineInputError(ValueError):
    """Input the engine refuses, named by its request path (``positions[3].price``)."""

    def __init__(self, field: str, code: str, message: str, path: Path | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message
        # the structured path when the field was built from one (the validator's problems)
        self.path = path

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class InvalidPortfolio(EngineInputError):
    """Every problem ``validation.validate_portfolio`` found; field, code and message are the
    first one's (what a single-error caller reports)."""

    def __init__(self, problems: Sequence[EngineInputError]) -> None:
        first = problems[0]
        super().__init__(first.field, first.code, first.message, first.path)
        self.problems = tuple(problems)
        if len(problems) > 1:
            self.message = f"{first.message} (and {len(problems) - 1} more)"


class OracleRejected(EngineInputError):
    """An oracle round failed a check (METHODOLOGY.md section 6); ``check`` names which."""

    def __init__(self, field: str, feed: str, check: str, message: str) -> None:
        super().__init__(field, f"oracle_{check}", f"oracle feed {feed}: {message}")
        self.feed = feed
        self.check = check
