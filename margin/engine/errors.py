"""Errors the engine raises for input it cannot value; the calculator turns them into 400s."""

from __future__ import annotations


class EngineInputError(ValueError):
    """Input the engine refuses, named by its request path (``positions[3].price``)."""

    def __init__(self, field: str, code: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class OracleRejected(EngineInputError):
    """An oracle round failed a check (METHODOLOGY.md section 6); ``check`` names which."""

    def __init__(self, field: str, feed: str, check: str, message: str) -> None:
        super().__init__(field, f"oracle_{check}", f"oracle feed {feed}: {message}")
        self.feed = feed
        self.check = check
