"""Reading the API's one error body in tests: ``{"errors": [{"field", "code", "message"}]}``."""

from __future__ import annotations

import json
from typing import Any


def errors_of(response: Any) -> list[dict[str, str]]:
    """The response's errors, after checking the body has exactly the one shape."""
    body = json.loads(response.content)
    assert list(body) == ["errors"], body
    assert body["errors"], body
    for error in body["errors"]:
        assert sorted(error) == ["code", "field", "message"], error
        assert all(isinstance(value, str) for value in error.values()), error
    return body["errors"]


def the_error(response: Any) -> dict[str, str]:
    """The one error of a response that has exactly one."""
    errors = errors_of(response)
    assert len(errors) == 1, errors
    return errors[0]


def decide(client: Any, url: str, data: Any = None, **kwargs: Any) -> Any:
    """POST a decision as a client does: read the object it is about (the URL one level up)
    and send back its ETag as If-Match (none where the caller may not read it: the refusal
    comes first)."""
    read = client.get(url.rstrip("/").rsplit("/", 1)[0] + "/")
    if read.has_header("ETag"):
        kwargs["HTTP_IF_MATCH"] = read["ETag"]
    return client.post(url, data, **kwargs)
