"""Below an account's current margin: its history (``GET /accounts/{number}/margin/history``,
the append-only snapshots, newest first, cursor-paginated) and a what-if (``POST
/accounts/{number}/what-if``: the account's book plus or minus positions, valued by the engine
as the sweep values one account, `margin.valuing.value_alone`; nothing is written).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Account, Instrument
from brokerage.api import (
    InputSerializer,
    IsFirmMember,
    TenantAPIView,
    TenantScopedMixin,
    validated,
)
from brokerage.api_query import CursorPagination, FilterBackend, FilterSet
from brokerage.errors import InvalidInput, Unprocessable

from ..book import Holding, market_observations_for, vol_values
from ..models import MarginSnapshot
from ..valuing import ChunkInputs, Flagged, value_alone
from .book import account_in_url


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = MarginSnapshot
        fields = ["id", "computed_at", "margin_type", "cash", "net_liquidation_value", "equity",
                  "requirement", "excess", "pm_requirement", "house_requirement",
                  "regt_initial", "regt_maintenance", "collateral_effective_value",
                  "health_factor", "add_ons", "flags", "methods", "engine_version",
                  "parameter_set", "inputs_hash"]
        read_only_fields = fields


class SnapshotFilterSet(FilterSet):
    computed_after = filters.IsoDateTimeFilter(field_name="computed_at", lookup_expr="gte")
    computed_before = filters.IsoDateTimeFilter(field_name="computed_at", lookup_expr="lt")

    class Meta:
        model = MarginSnapshot
        fields = ["computed_after", "computed_before"]


class NewestFirst(CursorPagination):
    ordering = ("-computed_at", "-pk")


class MarginHistoryView(TenantScopedMixin, ListAPIView):
    """The account's margin snapshots, newest first (a page per cursor)."""

    serializer_class = SnapshotSerializer
    pagination_class = NewestFirst
    filter_backends = [FilterBackend]
    filterset_class = SnapshotFilterSet
    permission_classes = [IsAuthenticated, IsFirmMember]  # and the account visible to them

    def get_queryset(self) -> QuerySet:
        if getattr(self, "swagger_fake_view", False):
            return MarginSnapshot._base_manager.none()
        account = account_in_url(self.request, self.kwargs["number"])
        return MarginSnapshot.objects.filter(account=account)


# What-if ---------------------------------------------------------------------------------------

class WhatIfPositionInput(InputSerializer):
    symbol = serializers.CharField(max_length=64)
    quantity = serializers.DecimalField(max_digits=24, decimal_places=8,
                                        help_text="added to the book (negative: taken off)")


class WhatIfInput(InputSerializer):
    positions = WhatIfPositionInput(many=True, allow_empty=False, max_length=200)


class WhatIfFiguresSerializer(serializers.Serializer):
    equity = serializers.DecimalField(max_digits=20, decimal_places=2)
    requirement = serializers.DecimalField(max_digits=20, decimal_places=2)
    excess = serializers.DecimalField(max_digits=20, decimal_places=2)


class WhatIfPositionSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=24, decimal_places=8)


class WhatIfSerializer(serializers.Serializer):
    account = serializers.CharField()
    before = WhatIfFiguresSerializer()
    after = WhatIfFiguresSerializer()
    change = WhatIfFiguresSerializer(help_text="after minus before")
    positions_after = WhatIfPositionSerializer(many=True)


def _figures(outcome: Flagged | MarginSnapshot, when: str) -> dict[str, Decimal]:
    if isinstance(outcome, Flagged):
        raise Unprocessable(f"the book {when} does not value: {outcome.flag}",
                            field="positions", code="not_valued")
    return {"equity": outcome.equity, "requirement": outcome.requirement,
            "excess": outcome.excess}


def what_if(account: Account, changes: list[dict]) -> dict:
    """The account valued as it is and with `changes` (symbol, signed quantity) applied."""
    symbols = [row["symbol"] for row in changes]
    found = {i.symbol: i for i in Instrument.objects.filter(symbol__in=symbols)
             .select_related("underlying", "token0", "token1")}
    missing = [(f"positions[{k}].symbol", "does_not_exist", f"no instrument {symbol!r}")
               for k, symbol in enumerate(symbols) if symbol not in found]
    if missing:
        raise InvalidInput(errors=missing)
    inputs = ChunkInputs.load([account])
    before = value_alone(inputs, account)
    quantities = {h.instrument_id: h for h in inputs.held(account)}
    for row in changes:
        instrument = found[row["symbol"]]
        held = quantities.get(instrument.pk)
        quantity = (held.quantity if held else Decimal(0)) + row["quantity"]
        quantities[instrument.pk] = Holding(account.pk, instrument, quantity,
                                            held.cost_basis if held else Decimal(0))
    book = [h for h in quantities.values() if h.quantity != 0]
    prices, vol_rows = market_observations_for({account.pk: book})
    changed = replace(inputs, positions={account.pk: book}, prices=prices, vol_rows=vol_rows,
                      vols=vol_values(vol_rows))
    after = value_alone(changed, account)
    shown_before, shown_after = _figures(before, "as it is"), _figures(after, "changed")
    return {"account": account.number, "before": shown_before, "after": shown_after,
            "change": {k: shown_after[k] - shown_before[k] for k in shown_before},
            "positions_after": [{"symbol": h.instrument.symbol, "quantity": h.quantity}
                                for h in sorted(book, key=lambda h: h.instrument.symbol)]}


class WhatIfView(TenantAPIView):
    """The account's requirement, equity and excess as they are and with the positions given
    added (negative quantities: taken off), valued by the engine; nothing is written."""

    writes_nothing = True  # a POST that only computes: read-only tokens may call it
    refusal_statuses = (422,)  # 422: a book that does not value (a price missing, say)

    @extend_schema(request=WhatIfInput, responses=WhatIfSerializer)
    def post(self, request: Request, number: str) -> Response:
        account = account_in_url(request, number)
        data = validated(WhatIfInput, request)
        return Response(WhatIfSerializer(what_if(account, data["positions"])).data)
