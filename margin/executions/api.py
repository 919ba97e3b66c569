"""REST doors to trade capture and the pre-trade check.

- ``/api/v1/executions/``: list and book (one execution, or ``{"executions": [...]}``, a batch
  booked all or nothing: the first refusal books none and names ``executions[i].field``);
  ``/api/v1/executions/{id}/``: one; ``/api/v1/executions/{id}/bust/``: reverse it (with an
  optional correction booked in the same transaction);
- ``/api/v1/accounts/{number}/pre-trade``: the check, which writes nothing.

Staff only; another firm's account or execution is a 404. Refusals go through the one error
handler: a rejected order is a 422 whose ``errors`` are the check's reasons (field
``pretrade``), a bad value a 400 naming its field.
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Instrument
from brokerage.api import (
    InputSerializer,
    IsFirmStaff,
    TenantAPIView,
    TenantViewSet,
    username,
    validated,
)
from brokerage.api_query import FilterSet
from brokerage.errors import InvalidInput, NotFound, Unprocessable
from brokerage.scope import current_firm

from .. import pretrade
from ..calls.api import visible_accounts
from . import services
from .models import Execution

SMALLEST = Decimal("0.00000001")
MAX_BATCH = 1000
#: what a new listed contract booked by its terms may be
LISTED_CONTRACT_KINDS = ["equity_option", "index_option", "future"]


class ContractInput(InputSerializer):
    kind = serializers.ChoiceField(choices=LISTED_CONTRACT_KINDS)
    underlying = serializers.CharField(max_length=64, help_text="the underlying's symbol")
    expiry = serializers.DateField()
    right = serializers.ChoiceField(choices=Instrument.Right.values, required=False)
    strike = serializers.DecimalField(max_digits=18, decimal_places=6, min_value=SMALLEST,
                                      required=False)
    multiplier = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=SMALLEST,
                                          required=False)
    exercise_style = serializers.ChoiceField(choices=Instrument.Exercise.values, required=False)
    symbol = serializers.CharField(max_length=64, required=False)


class ExecutionInput(InputSerializer):
    client_execution_id = serializers.CharField(max_length=services.ID_LENGTH)
    account = serializers.CharField(max_length=20, help_text="the account number")
    instrument = serializers.CharField(max_length=64, required=False,
                                       help_text="a listed instrument's symbol or id")
    contract = ContractInput(required=False, help_text="a new listed contract's terms, listed "
                                                       "through the instrument path")
    side = serializers.ChoiceField(choices=Execution.Side.choices)
    quantity = serializers.DecimalField(max_digits=24, decimal_places=8, min_value=SMALLEST)
    price = serializers.DecimalField(max_digits=24, decimal_places=8, min_value=Decimal(0))
    fees = serializers.DecimalField(max_digits=20, decimal_places=2, min_value=Decimal(0),
                                    required=False, default=Decimal(0))
    trade_time = serializers.DateTimeField(required=False)
    override_reason = serializers.CharField(
        max_length=300, required=False, default="", allow_blank=True,
        help_text="book an order the pre-trade check rejects (risk officers and firm admins "
                  "only), and why: kept on the execution and audited")


class ExecutionBatchInput(InputSerializer):
    executions = ExecutionInput(many=True, allow_empty=False, max_length=MAX_BATCH)


class BustInput(InputSerializer):
    reason = serializers.CharField(max_length=300)
    correction = ExecutionInput(required=False, help_text="the corrected execution, booked in "
                                                          "the same transaction")


class ExecutionSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)
    instrument = serializers.CharField(source="instrument.symbol", read_only=True)
    booked_by = username()
    override_by = username()

    class Meta:
        model = Execution
        fields = ["id", "client_execution_id", "account", "instrument", "kind", "side",
                  "quantity", "price", "fees", "trade_time", "position_before",
                  "position_after", "cash_amount", "reverses", "corrects", "origin", "reason",
                  "pretrade", "override_reason", "override_by", "booked_by", "booked_at"]
        read_only_fields = fields


class BookedSerializer(ExecutionSerializer):
    duplicate = serializers.SerializerMethodField(
        help_text="true: a resend of an id already booked; the original is returned")

    class Meta(ExecutionSerializer.Meta):
        fields = [*ExecutionSerializer.Meta.fields, "duplicate"]
        read_only_fields = fields

    def get_duplicate(self, execution: Execution) -> bool:
        return bool(getattr(execution, "duplicate", False))


class BookedBatchSerializer(serializers.Serializer):
    executions = BookedSerializer(many=True)


class ExecutionFilterSet(FilterSet):
    account = filters.CharFilter(field_name="account__number")
    kind = filters.MultipleChoiceFilter(choices=Execution.Kind.choices)
    client_execution_id = filters.CharFilter()

    class Meta:
        model = Execution
        fields = ["account", "kind", "client_execution_id"]


def _ticket(data: dict, prefix: str = "") -> services.Ticket:
    raw = dict(data)
    if "contract" in raw:
        raw["contract"] = {k: (v.isoformat() if hasattr(v, "isoformat") else v)
                           for k, v in raw["contract"].items()}
    return services.parse_ticket(raw, prefix)


class ExecutionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The firm's executions, newest first: staff read, the desk, risk officers and admins
    book (see ``create``) and bust."""

    permission_classes = [IsAuthenticated, IsFirmStaff]
    serializer_class = ExecutionSerializer
    filterset_class = ExecutionFilterSet

    def scoped_queryset(self) -> QuerySet:
        return Execution.objects.select_related("account", "instrument", "booked_by",
                                                "override_by").order_by("-trade_time", "-pk")

    @extend_schema(
        request=PolymorphicProxySerializer("ExecutionBooking", [ExecutionInput,
                                                                ExecutionBatchInput],
                                           resource_type_field_name=None),
        responses={201: PolymorphicProxySerializer("ExecutionsBooked", [BookedSerializer,
                                                                        BookedBatchSerializer],
                                                   resource_type_field_name=None),
                   200: OpenApiResponse(BookedSerializer, description="a resend of an id "
                                                                       "already booked"),
                   422: OpenApiResponse(description="the pre-trade check rejects the order: "
                                                    "its reasons, field pretrade")},
        description="Book one execution, or a batch as ``{\"executions\": [...]}`` (all or "
                    "nothing: the first refusal books none, its fields named "
                    "``executions[i].field``). A resend of a client execution id already "
                    "booked books nothing and returns the original (``duplicate``: true). "
                    "Each execution moves the position by its signed quantity and the cash by "
                    "``-signed quantity x price x multiplier`` (a future's: 0) and ``-fees``, "
                    "in one transaction, audited, and marks the account dirty. It passes the "
                    "pre-trade check first (``POST /api/v1/accounts/{number}/pre-trade``): an "
                    "order the check rejects is a 422 listing its reasons unless "
                    "``override_reason`` is given by a risk officer or firm admin (audited).")
    def create(self, request: Request) -> Response:
        if isinstance(request.data, dict) and "executions" in request.data:
            data = validated(ExecutionBatchInput, request)
            tickets = [_ticket(item, f"executions[{k}].")
                       for k, item in enumerate(data["executions"])]
            booked = services.book_batch(firm=current_firm(), actor=request.user,
                                         tickets=tickets)
            rows = []
            for execution, created in booked:
                execution.duplicate = not created
                rows.append(execution)
            return Response({"executions": BookedSerializer(rows, many=True).data},
                            status=status.HTTP_201_CREATED)
        data = validated(ExecutionInput, request)
        execution, created = services.book_execution(firm=current_firm(), actor=request.user,
                                                     ticket=_ticket(data))
        execution.duplicate = not created
        return Response(BookedSerializer(execution).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=BustInput, responses={201: ExecutionSerializer})
    @action(detail=True, methods=["post"])
    def bust(self, request: Request, pk: str | None = None) -> Response:
        """Reverse the execution with a linked bust (and book its correction, if given)."""
        execution = self.get_object()
        data = validated(BustInput, request)
        corrected = _ticket(data["correction"], "correction.") if data.get("correction") \
            else None
        bust = services.bust_execution(execution=execution, actor=request.user,
                                       reason=data["reason"], corrected=corrected)
        return Response(ExecutionSerializer(bust).data, status=status.HTTP_201_CREATED)


# The pre-trade check ---------------------------------------------------------------------------

class OrderInput(InputSerializer):
    instrument = serializers.CharField(max_length=64, help_text="a listed instrument's symbol "
                                                                "or id")
    side = serializers.ChoiceField(choices=Execution.Side.choices)
    quantity = serializers.DecimalField(max_digits=24, decimal_places=8, min_value=SMALLEST)
    price = serializers.DecimalField(max_digits=24, decimal_places=8, min_value=Decimal(0),
                                     required=False, help_text="default: the current mark")
    fees = serializers.DecimalField(max_digits=20, decimal_places=2, min_value=Decimal(0),
                                    required=False, default=Decimal(0))


class PreTradeInput(InputSerializer):
    orders = OrderInput(many=True, allow_empty=False, max_length=100)
    buying_power = serializers.BooleanField(
        required=False, default=True,
        help_text="false leaves the buying power out (for portfolio margin it is a search "
                  "over quantity on the engine: the costly part)")


class FiguresSerializer(serializers.Serializer):
    equity = serializers.DecimalField(max_digits=20, decimal_places=2)
    requirement = serializers.DecimalField(max_digits=20, decimal_places=2)
    excess_liquidity = serializers.DecimalField(max_digits=20, decimal_places=2)
    health_factor = serializers.DecimalField(max_digits=20, decimal_places=6, allow_null=True)
    cash = serializers.DecimalField(max_digits=20, decimal_places=2)


class BuyingPowerSerializer(serializers.Serializer):
    instrument = serializers.CharField()
    side = serializers.CharField()
    before = serializers.DecimalField(max_digits=20, decimal_places=2)
    after = serializers.DecimalField(max_digits=20, decimal_places=2)
    quantity_before = serializers.DecimalField(max_digits=24, decimal_places=0, allow_null=True)
    quantity_after = serializers.DecimalField(max_digits=24, decimal_places=0, allow_null=True)


class ReasonSerializer(serializers.Serializer):
    code = serializers.ChoiceField(choices=["restricted", "pm_deficiency_past_due", "deficit",
                                            "health_factor"])
    message = serializers.CharField()


class PreTradeSerializer(serializers.Serializer):
    account = serializers.CharField()
    margin_type = serializers.CharField()
    decision = serializers.ChoiceField(choices=[pretrade.ACCEPT, pretrade.REJECT])
    before = FiguresSerializer()
    after = FiguresSerializer()
    intraday_margin_level = serializers.DecimalField(max_digits=20, decimal_places=2)
    buying_power = BuyingPowerSerializer(many=True)
    reasons = ReasonSerializer(many=True)
    computed_at = serializers.DateTimeField()


FORMULAS = """Proposed orders against the account's book, valued now; writes nothing.

Before and after the orders (the sweep's valuation: latest prices and vols, the firm's
parameters):

- `equity` = cash + net liquidation value; the orders move cash by
  `-signed quantity x price x multiplier - fees` (a future's premium is 0) and each position by
  its signed quantity (`price` defaults to the current mark);
- `requirement` = the requirement of the account's margin type (portfolio margin with the
  firm's house components; Reg T maintenance; a cash account's full payment);
- `excess_liquidity` = equity - requirement (negative: a deficit);
- `buying_power` per instrument ordered: Reg T and cash accounts
  `max(excess_liquidity, 0) / rate`, `rate` the initial-margin rate of what is bought (0.5 for
  stock and ETFs in a Reg T account, Reg T 220.12; 1 otherwise); portfolio margin, the market
  value of the largest whole order of that instrument on the order's side whose
  `excess_liquidity` after stays >= 0 (powers of two, then a bracket search over quantity, on the engine),
  `quantity_*` that order's size;
- `intraday_margin_level` (after) = equity - requirement after the orders (maintenance basis).

`decision` is `reject` with every reason (`code`, `message`) when: `restricted` (an active
restriction forbids the order: closing-only forbids orders that open a position or raise the
requirement, funds on hand orders that raise a debit, the intraday block new or larger shorts
and debits); `pm_deficiency_past_due` (a portfolio-margin account whose PM deficiency call is
past its due date, an order raising the requirement, the call policy's
`reject_increasing_orders_past_due` on); `deficit` (excess after < 0 and below the excess
before); `health_factor` (the crypto health factor after is below the call policy's
`health_factor_call` band and lower than before). Booking an execution runs the same check."""


class PreTradeView(TenantAPIView):
    permission_classes = [IsAuthenticated, IsFirmStaff]
    writes_nothing = True  # a POST that only computes: read-only API tokens may call it

    @extend_schema(request=PreTradeInput, responses={
        200: PreTradeSerializer,
        422: OpenApiResponse(description="the book or an order cannot be valued (a missing "
                                         "price, a rejected oracle round)")},
        description=FORMULAS)
    def post(self, request: Request, number: str) -> Response:
        account = visible_accounts(request.user).filter(number=number).first()
        if account is None:
            raise NotFound(f"no account {number} in your firm")
        data = validated(PreTradeInput, request)
        orders = []
        problems = []
        for k, order in enumerate(data["orders"]):
            try:
                instrument = services.instrument_named(order["instrument"])
            except InvalidInput as exc:
                problems.append((f"orders[{k}].instrument", "unknown", exc.message))
                continue
            orders.append(pretrade.Order(instrument, order["side"], order["quantity"],
                                         order.get("price"), order["fees"]))
        if problems:
            raise InvalidInput(errors=problems)
        try:
            result = pretrade.check(account=account, orders=orders,
                                    buying_power=data["buying_power"])
        except pretrade.Unvalued as exc:
            raise Unprocessable(f"the book cannot be valued: {exc}", field="orders",
                                code="unvalued") from None
        return Response(PreTradeSerializer(result.as_dict()).data)
