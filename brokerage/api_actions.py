"""The shape of every write on a tenant viewset: the URL's object, the validated body, the
service's result as the answer.

Kept beside `brokerage.api` (whose `validated` it uses) so the viewsets say only what differs
per action: which input serializer, which service with which arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from . import approvals
from .api import InputSerializer, validated
from .api_schema import ErrorsSerializer
from .errors import PreconditionFailed, PreconditionRequired


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


# Optimistic concurrency on decisions ----------------------------------------------------------
# A decision rests on what the decider read: the GET of the row answers an ETag carrying the
# version `brokerage.approvals` compares (its kind's `current_version` of the subject), and a
# decision must send it back as If-Match: without it a 428, with another one a 412 (someone
# changed what it would change since it was read), after the body validates and before anything
# is written.

def etag(kind: str, subject: Any) -> str:
    """The ETag of `subject` awaiting a decision of approvals kind `kind`."""
    version = approvals.kind_of(kind).current_version(subject)
    return f'"{kind}-{subject.pk}-v{version}"'


def version_in(tag: str) -> int | None:
    """The version an ETag of `etag` carries (None: not one of ours)."""
    _, _, version = tag.strip().removeprefix("W/").strip('"').rpartition("-v")
    return int(version) if version.isdigit() else None


def require_if_match(request: Request, kind: str, subject: Any) -> int:
    """The version the caller decided on, checked against the current one (module comment)."""
    sent = request.headers.get("If-Match", "").strip()
    if not sent or sent == "*":
        raise PreconditionRequired("send If-Match with the ETag of the object as you read it "
                                   "(GET it first)", field="If-Match")
    current = etag(kind, subject)
    if current not in {tag.strip() for tag in sent.split(",")}:
        raise PreconditionFailed(f"it changed since you read it: its ETag is now {current}; "
                                 "read it again before deciding", field="If-Match")
    return version_in(current)


IF_MATCH = OpenApiParameter(
    "If-Match", OpenApiTypes.STR, OpenApiParameter.HEADER, required=True,
    description="the ETag of the object as you read it (its GET answers it)")
ETAG = OpenApiParameter(
    "ETag", OpenApiTypes.STR, OpenApiParameter.HEADER, response=[200],
    description="the version a decision on this object rests on: send it back as If-Match")
PRECONDITION_RESPONSES = {
    412: OpenApiResponse(ErrorsSerializer, description=(
        "If-Match is not the object's current ETag: it changed since it was read; nothing was "
        "written.")),
    428: OpenApiResponse(ErrorsSerializer, description="If-Match is missing; nothing was "
                                                       "written."),
}


class VersionedRetrieve:
    # Mixed into a viewset whose rows are decided through `brokerage.approvals`: its GET of one
    # row answers the row's ETag. `approval_kind` names the kind.

    approval_kind: str = ""

    @extend_schema(parameters=[ETAG])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        row = self.get_object()
        return Response(self.get_serializer(row).data,
                        headers={"ETag": etag(self.approval_kind, row)})


#: (input serializer, service(row, user, data, version)) of one side of a decision; `version`
#: is what If-Match carried, for services that compare it again under their locks
Decision = tuple[type[InputSerializer], Callable[..., Any]]


def decision_endpoints(row_serializer: type, *, approve: Decision, reject: Decision):
    """The second person's two endpoints on a row awaiting a decision (``brokerage.approvals``),
    ``POST {id}/approve/`` and ``POST {id}/reject/``, each answering with the row. Each needs
    If-Match (the row's ETag, `VersionedRetrieve`)."""

    def endpoint(name: str, decision: Decision):
        body, decide = decision

        def decide_one(self, request: Request, pk: str | None = None) -> Response:
            row = self.get_object()
            data = validated(body, request)
            version = require_if_match(request, self.approval_kind, row)
            return self.answer(decide(row, request.user, data, version))

        decide_one.__name__ = decide_one.__qualname__ = name
        return extend_schema(request=body, parameters=[IF_MATCH],
                             responses={200: row_serializer, **PRECONDITION_RESPONSES})(
            action(detail=True, methods=["post"])(decide_one))

    return endpoint("approve", approve), endpoint("reject", reject)
