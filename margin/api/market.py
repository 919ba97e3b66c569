"""Market data over the API: ``/api/v1/prices/`` and ``/api/v1/vols/``.

Every signed-in user reads them (firm members and the platform's own users: market reference
data is shared); only the platform's market-data operator (``manage.py create_platform_user
NAME --role market_data``) loads them, through the load services (`margin.market_data`), which
validate every row (symbol known, value positive and finite, time not in the future), store
all or nothing with one audit event on the platform chain, and mark the holders dirty.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from brokerage.api import InputSerializer, TenantViewSet, validated
from brokerage.api_query import FilterSet
from brokerage.roles import PlatformRoleName
from brokerage.tenancy import membership_of, platform_role_of

from .. import market_data
from ..models import ImpliedVolatility, PriceObservation
from .book import LIST_BACKENDS, IsFirmMemberOrPlatformUser, visible_instruments

#: sources an operator loads from (oracle rounds have their own door; demo rows the seed's)
LOADED_SOURCES = [PriceObservation.Source.EXCHANGE, PriceObservation.Source.VENDOR,
                  PriceObservation.Source.MANUAL]


class IsMarketDataOperator(permissions.BasePermission):
    message = "only the platform's market-data operator loads market data"

    def has_permission(self, request, view) -> bool:
        return (platform_role_of(request.user) == PlatformRoleName.MARKET_DATA
                and membership_of(request.user) is None)


class PriceSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = PriceObservation
        fields = ["id", "instrument", "symbol", "price", "source", "observed_at", "loaded_at"]
        read_only_fields = fields


class VolSerializer(serializers.ModelSerializer):
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)

    class Meta:
        model = ImpliedVolatility
        fields = ["id", "instrument", "symbol", "volatility", "source", "observed_at"]
        read_only_fields = fields


class _ObservationFilterSet(FilterSet):
    symbol = filters.CharFilter(field_name="instrument__symbol")
    source = filters.MultipleChoiceFilter(choices=PriceObservation.Source.choices)
    observed_after = filters.IsoDateTimeFilter(field_name="observed_at", lookup_expr="gte")
    observed_before = filters.IsoDateTimeFilter(field_name="observed_at", lookup_expr="lt")


class PriceFilterSet(_ObservationFilterSet):
    class Meta:
        model = PriceObservation
        fields = ["symbol", "source", "observed_after", "observed_before"]


class VolFilterSet(_ObservationFilterSet):
    class Meta:
        model = ImpliedVolatility
        fields = ["symbol", "source", "observed_after", "observed_before"]


class PriceRowInput(InputSerializer):
    symbol = serializers.CharField(max_length=64)
    price = serializers.DecimalField(max_digits=24, decimal_places=8)
    observed_at = serializers.DateTimeField()


class VolRowInput(InputSerializer):
    symbol = serializers.CharField(max_length=64)
    volatility = serializers.DecimalField(max_digits=10, decimal_places=6)
    observed_at = serializers.DateTimeField()


class PriceLoadInput(InputSerializer):
    source = serializers.ChoiceField(choices=LOADED_SOURCES)
    observations = PriceRowInput(many=True, allow_empty=False, max_length=10_000)


class VolLoadInput(InputSerializer):
    source = serializers.ChoiceField(choices=LOADED_SOURCES)
    observations = VolRowInput(many=True, allow_empty=False, max_length=10_000)


class _MarketDataViewSet(mixins.ListModelMixin, TenantViewSet):
    filter_backends = LIST_BACKENDS
    ordering_fields = ["observed_at"]
    model: type = PriceObservation
    value_field = "price"
    load_input: type[InputSerializer] = PriceLoadInput

    def get_permissions(self):
        if self.action == "create":
            return [permissions.IsAuthenticated(), IsMarketDataOperator()]
        return [permissions.IsAuthenticated(), IsFirmMemberOrPlatformUser()]

    def scoped_queryset(self) -> QuerySet:
        return (self.model.objects.filter(instrument__in=visible_instruments(self.request.user))
                .select_related("instrument").order_by("-observed_at", "-pk"))

    def load(self, request: Request, service) -> Response:
        data = validated(self.load_input, request)
        rows = [{"symbol": row["symbol"], self.value_field: str(row[self.value_field]),
                 "observed_at": row["observed_at"].isoformat()} for row in data["observations"]]
        created = service(observations=rows, source=data["source"], actor=request.user)
        return Response(self.get_serializer(created, many=True).data, status=201)


class PriceViewSet(_MarketDataViewSet):
    """Observed prices, newest first; a load by the market-data operator."""

    serializer_class = PriceSerializer
    filterset_class = PriceFilterSet

    @extend_schema(request=PriceLoadInput, responses={201: PriceSerializer(many=True)})
    def create(self, request: Request) -> Response:
        return self.load(request, market_data.load_prices)


class VolViewSet(_MarketDataViewSet):
    """Implied volatilities, newest first; a load by the market-data operator."""

    serializer_class = VolSerializer
    filterset_class = VolFilterSet
    model = ImpliedVolatility
    value_field = "volatility"
    load_input = VolLoadInput

    @extend_schema(request=VolLoadInput, responses={201: VolSerializer(many=True)})
    def create(self, request: Request) -> Response:
        return self.load(request, market_data.load_implied_vols)
