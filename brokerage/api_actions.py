"""The shape of every write on a tenant viewset: the URL's object, the validated body, the
service's result as the answer.

Kept beside `brokerage.api` (whose `validated` it uses) so the viewsets say only what differs
per action: which input serializer, which service with which arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from .api import InputSerializer, validated


class ServiceActions:
    # Mixed into a `TenantViewSet`: `act` for an action on one object, `answer` for a row.
    # (A comment, not a docstring: the API schema would take it as each view's description.)

    def answer(self, row: Any, *, created: bool = False) -> Response:
        """`row` as the viewset serializes it: 201 when the action created it, else 200."""
        return Response(self.get_serializer(row).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def act(self, request: Request, body: type[InputSerializer],
            service: Callable[[Any, dict[str, Any]], Any]) -> Response:
        """The object in the URL (another firm's is a 404, before the body is read), the body
        through `body`, then `service(object, data)`; its row is the answer."""
        target = self.get_object()
        data = validated(body, request)
        return self.answer(service(target, data))


#: (input serializer, service(row, user, data)) of one side of a decision
Decision = tuple[type[InputSerializer], Callable[[Any, Any, dict[str, Any]], Any]]


def decision_endpoints(row_serializer: type, *, approve: Decision, reject: Decision):
    """The second person's two endpoints on a row awaiting a decision (``brokerage.approvals``),
    ``POST {id}/approve/`` and ``POST {id}/reject/``, each answering with the row."""

    def endpoint(name: str, decision: Decision):
        body, decide = decision

        def decide_one(self, request: Request, pk: str | None = None) -> Response:
            return self.act(request, body, lambda row, data: decide(row, request.user, data))

        decide_one.__name__ = decide_one.__qualname__ = name
        return extend_schema(request=body, responses=row_serializer)(
            action(detail=True, methods=["post"])(decide_one))

    return endpoint("approve", approve), endpoint("reject", reject)
