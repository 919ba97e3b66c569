"""The book over the API: ``/api/v1/clients/``, ``/api/v1/positions/`` (and each account's
``/accounts/{number}/positions/``), ``/api/v1/ledger-entries/`` with each account's deposits and
withdrawals (``POST /accounts/{number}/deposits/``, ``.../withdrawals/``) and
``/api/v1/instruments/``.

Reads go through the scoped managers; staff see the firm's rows, a client the accounts guardian
grants them (`visible_accounts`). Filters offer only the firm's choices: an account filter takes
the firm's account numbers, and another firm's number is refused like a typo (a 400), never
matched. Deposits and withdrawals are the book's service (`accounts.services.post_ledger_entry`:
it audits and marks the account dirty in its transaction, and refuses what the book's rules
refuse), by the roles that may add ledger entries (`brokerage.roles.can`).
"""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, permissions, serializers
from rest_framework.filters import OrderingFilter
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import services as book
from accounts.models import Account, Client, Instrument, LedgerEntry, Position
from brokerage.api import InputSerializer, TenantAPIView, TenantViewSet, username, validated
from brokerage.api_query import FilterBackend, FilterSet
from brokerage.errors import NotFound
from brokerage.roles import can
from brokerage.tenancy import firm_of, is_staff_member, platform_role_of, role_of

from ..calls.api import visible_accounts

#: list endpoints filter, then order (``?ordering=-effective_at``) by the fields they name
LIST_BACKENDS = [FilterBackend, OrderingFilter]


def firm_accounts(request) -> QuerySet[Account]:
    """The choices of an account filter: the accounts the caller sees, never another firm's
    (the schema is built without a request: no choices)."""
    if request is None or firm_of(request.user) is None:
        return Account._base_manager.none()
    return visible_accounts(request.user)


def account_filter(field_name: str = "account__number") -> filters.ModelMultipleChoiceFilter:
    # (the filter compares `field_name` with each choice's `to_field_name`)
    return extend_schema_field(OpenApiTypes.STR)(filters.ModelMultipleChoiceFilter(
        field_name=field_name, to_field_name="number", queryset=firm_accounts,
        help_text="account numbers of your firm (repeat the parameter for several)"))


class CanAdd(permissions.BasePermission):
    """The role may add rows of the view's `adds` model (`brokerage.roles.can`)."""

    message = "your role may not add these"

    def has_permission(self, request, view) -> bool:
        return can(role_of(request.user), view.adds, "add")


# Clients ---------------------------------------------------------------------------------------

class ClientSerializer(serializers.ModelSerializer):
    accounts = serializers.SlugRelatedField(slug_field="number", many=True, read_only=True)

    class Meta:
        model = Client
        fields = ["id", "kind", "name", "email", "investment_objective", "options_approval_level",
                  "holds_unlisted_derivatives", "accounts", "created_at", "updated_at"]
        read_only_fields = fields


class ClientFilterSet(FilterSet):
    kind = filters.MultipleChoiceFilter(choices=Client.Kind.choices)
    investment_objective = filters.MultipleChoiceFilter(choices=Client.Objective.choices)
    name = filters.CharFilter(lookup_expr="icontains", help_text="part of the name")

    class Meta:
        model = Client
        fields = ["kind", "investment_objective", "name"]


class ClientViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The firm's clients: staff see all, a client their own profile."""

    serializer_class = ClientSerializer
    filterset_class = ClientFilterSet
    filter_backends = LIST_BACKENDS
    ordering_fields = ["name", "created_at"]

    def scoped_queryset(self) -> QuerySet:
        clients = Client.objects.prefetch_related("accounts").order_by("name", "pk")
        if is_staff_member(self.request.user):
            return clients
        return clients.filter(portal_user=self.request.user)


# Positions -------------------------------------------------------------------------------------

class PositionSerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)
    symbol = serializers.CharField(source="instrument.symbol", read_only=True)
    kind = serializers.CharField(source="instrument.kind", read_only=True)
    class_group = serializers.CharField(source="instrument.class_group", read_only=True)

    class Meta:
        model = Position
        fields = ["id", "account", "instrument", "symbol", "kind", "class_group", "quantity",
                  "cost_basis", "updated_at"]
        read_only_fields = fields


class PositionFilterSet(FilterSet):
    account = account_filter()
    symbol = filters.CharFilter(field_name="instrument__symbol")
    kind = filters.MultipleChoiceFilter(field_name="instrument__kind",
                                        choices=Instrument.Kind.choices)
    class_group = filters.CharFilter(field_name="instrument__class_group")
    short = filters.BooleanFilter(field_name="quantity", lookup_expr="lt", method="_short",
                                  help_text="true: short positions only; false: long only")

    class Meta:
        model = Position
        fields = ["account", "symbol", "kind", "class_group", "short"]

    def _short(self, queryset: QuerySet, name: str, value: bool) -> QuerySet:
        return queryset.filter(quantity__lt=0) if value else queryset.filter(quantity__gt=0)


def _positions(user) -> QuerySet[Position]:
    rows = Position.objects.select_related("account", "instrument").order_by(
        "account__number", "instrument__symbol", "pk")
    if is_staff_member(user):
        return rows
    return rows.filter(account__in=visible_accounts(user))


class PositionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Positions of the firm's accounts (a client: of their own accounts)."""

    serializer_class = PositionSerializer
    filterset_class = PositionFilterSet
    filter_backends = LIST_BACKENDS
    ordering_fields = ["quantity", "updated_at"]

    def scoped_queryset(self) -> QuerySet:
        return _positions(self.request.user)


def account_in_url(request: Request, number: str) -> Account:
    """The account the URL names, if the caller sees it; another firm's is a 404."""
    account = visible_accounts(request.user).filter(number=number).first()
    if account is None:
        raise NotFound(f"no account {number!r} in your firm", field="number")
    return account


class AccountPositionsView(TenantAPIView):
    """One account's positions, by symbol."""

    @extend_schema(responses=PositionSerializer(many=True))
    def get(self, request: Request, number: str) -> Response:
        account = account_in_url(request, number)
        rows = _positions(request.user).filter(account=account)
        return Response(PositionSerializer(rows, many=True).data)


# Ledger ----------------------------------------------------------------------------------------

class LedgerEntrySerializer(serializers.ModelSerializer):
    account = serializers.CharField(source="account.number", read_only=True)
    created_by = username()

    class Meta:
        model = LedgerEntry
        fields = ["id", "account", "kind", "amount", "currency", "effective_at", "memo",
                  "corrects", "created_by", "created_at"]
        read_only_fields = fields


class LedgerEntryFilterSet(FilterSet):
    account = account_filter()
    kind = filters.MultipleChoiceFilter(choices=LedgerEntry.Kind.choices)
    effective_after = filters.IsoDateTimeFilter(field_name="effective_at", lookup_expr="gte")
    effective_before = filters.IsoDateTimeFilter(field_name="effective_at", lookup_expr="lt")

    class Meta:
        model = LedgerEntry
        fields = ["account", "kind", "effective_after", "effective_before"]


class LedgerEntryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """The cash ledger (append-only): staff read the firm's, a client their accounts'."""

    serializer_class = LedgerEntrySerializer
    filterset_class = LedgerEntryFilterSet
    filter_backends = LIST_BACKENDS
    ordering_fields = ["effective_at", "amount", "created_at"]

    def scoped_queryset(self) -> QuerySet:
        rows = LedgerEntry.objects.select_related("account", "created_by").order_by(
            "-effective_at", "-pk")
        if is_staff_member(self.request.user):
            return rows
        return rows.filter(account__in=visible_accounts(self.request.user))


class CashMovementInput(InputSerializer):
    amount = serializers.DecimalField(max_digits=20, decimal_places=2,
                                      min_value=Decimal("0.01"), help_text="the amount moved, positive, in the account's "
                                                "currency")
    memo = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    effective_at = serializers.DateTimeField(required=False, allow_null=True, default=None,
                                             help_text="when it took effect (default: now)")


class _CashMovementView(TenantAPIView):
    permission_classes = [permissions.IsAuthenticated, CanAdd]
    adds = "accounts.ledgerentry"
    kind: str = ""
    sign: int = 1

    def post(self, request: Request, number: str) -> Response:
        account = account_in_url(request, number)
        data = validated(CashMovementInput, request)
        entry = book.post_ledger_entry(account=account, kind=self.kind,
                                       amount=self.sign * data["amount"], actor=request.user,
                                       memo=data["memo"], effective_at=data["effective_at"])
        return Response(LedgerEntrySerializer(entry).data, status=201)


class DepositView(_CashMovementView):
    """Cash received into the account (a positive amount): an audited ledger entry; the
    account is revalued."""

    kind, sign = LedgerEntry.Kind.DEPOSIT, 1

    @extend_schema(request=CashMovementInput, responses={201: LedgerEntrySerializer})
    def post(self, request: Request, number: str) -> Response:
        return super().post(request, number)


class WithdrawalView(_CashMovementView):
    """Cash paid out of the account (the amount paid, positive): an audited ledger entry
    posted as a debit; the account is revalued."""

    kind, sign = LedgerEntry.Kind.WITHDRAWAL, -1

    @extend_schema(request=CashMovementInput, responses={201: LedgerEntrySerializer})
    def post(self, request: Request, number: str) -> Response:
        return super().post(request, number)


# Instruments -----------------------------------------------------------------------------------

class IsFirmMemberOrPlatformUser(permissions.BasePermission):
    """Market reference data: every firm member and the platform's own users read it."""

    message = "only members of a firm and platform users use this endpoint"

    def has_permission(self, request, view) -> bool:
        return firm_of(request.user) is not None or platform_role_of(request.user) is not None


def visible_instruments(user) -> QuerySet[Instrument]:
    """The shared instruments and the caller's firm's own (LP positions); a platform user,
    who belongs to no firm, the shared ones."""
    if firm_of(user) is None:
        return Instrument.cross_firm.for_compliance(
            reason="shared reference data for a platform user").filter(firm__isnull=True)
    return Instrument.objects.all()


class InstrumentSerializer(serializers.ModelSerializer):
    underlying = serializers.SlugRelatedField(slug_field="symbol", read_only=True,
                                              allow_null=True)
    # blank for what is not an option: the schema lists "" beside the choices
    right = serializers.ChoiceField(choices=Instrument.Right.choices, allow_blank=True,
                                    read_only=True)
    exercise_style = serializers.ChoiceField(choices=Instrument.Exercise.choices,
                                             allow_blank=True, read_only=True)

    class Meta:
        model = Instrument
        fields = ["id", "symbol", "kind", "description", "underlying", "product_class",
                  "class_group", "product_group", "multiplier", "strike", "right", "expiry",
                  "exercise_style"]
        read_only_fields = fields


class InstrumentFilterSet(FilterSet):
    symbol = filters.CharFilter()
    kind = filters.MultipleChoiceFilter(choices=Instrument.Kind.choices)
    product_class = filters.MultipleChoiceFilter(choices=Instrument.ProductClass.choices)
    class_group = filters.CharFilter()
    underlying = filters.CharFilter(field_name="underlying__symbol",
                                    help_text="the underlying's symbol")
    expires_before = filters.DateFilter(field_name="expiry", lookup_expr="lte")

    class Meta:
        model = Instrument
        fields = ["symbol", "kind", "product_class", "class_group", "underlying"]


class InstrumentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantViewSet):
    """Instruments: shared market reference data, plus the firm's own LP positions."""

    serializer_class = InstrumentSerializer
    permission_classes = [permissions.IsAuthenticated, IsFirmMemberOrPlatformUser]
    filterset_class = InstrumentFilterSet
    filter_backends = LIST_BACKENDS
    ordering_fields = ["symbol", "expiry"]

    def scoped_queryset(self) -> QuerySet:
        return visible_instruments(self.request.user).select_related("underlying").order_by(
            "symbol", "pk")

