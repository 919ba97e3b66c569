from django.urls import path
from rest_framework.routers import SimpleRouter

from ..calls.api import (
    AccountViewSet,
    CallPolicyViewSet,
    MarginCallViewSet,
    MarginRecordView,
    MarginReportView,
    RestrictionViewSet,
)
from ..executions.api import ExecutionViewSet, PreTradeView
from .book import (
    AccountPositionsView,
    ClientViewSet,
    DepositView,
    InstrumentViewSet,
    LedgerEntryViewSet,
    PositionViewSet,
    WithdrawalView,
)
from .history import MarginHistoryView, WhatIfView
from .market import PriceViewSet, VolViewSet
from .parameters import RiskParameterSetViewSet
from .views import MarginCalculateView

router = SimpleRouter()
router.register("risk-parameters", RiskParameterSetViewSet, basename="risk-parameters")
router.register("margin-calls", MarginCallViewSet, basename="margin-calls")
router.register("accounts", AccountViewSet, basename="accounts")
router.register("call-policies", CallPolicyViewSet, basename="call-policies")
router.register("restrictions", RestrictionViewSet, basename="restrictions")
router.register("executions", ExecutionViewSet, basename="executions")
router.register("clients", ClientViewSet, basename="clients")
router.register("positions", PositionViewSet, basename="positions")
router.register("ledger-entries", LedgerEntryViewSet, basename="ledger-entries")
router.register("instruments", InstrumentViewSet, basename="instruments")
router.register("prices", PriceViewSet, basename="prices")
router.register("vols", VolViewSet, basename="vols")

urlpatterns = [
    path("margin/calculate", MarginCalculateView.as_view(), name="margin-calculate"),
    path("margin-record/", MarginRecordView.as_view(), name="margin-record"),
    path("margin-report/", MarginReportView.as_view(), name="margin-report"),
    # the current margin as the issue names it, without the router's trailing slash
    path("accounts/<str:number>/margin", AccountViewSet.as_view({"get": "margin"}),
         name="account-margin"),
    # the pre-trade check as the issue names it (no trailing slash)
    path("accounts/<str:number>/pre-trade", PreTradeView.as_view(), name="account-pre-trade"),
    path("accounts/<str:number>/margin/history", MarginHistoryView.as_view(),
         name="account-margin-history"),
    path("accounts/<str:number>/what-if", WhatIfView.as_view(), name="account-what-if"),
    path("accounts/<str:number>/positions/", AccountPositionsView.as_view(),
         name="account-positions"),
    path("accounts/<str:number>/deposits/", DepositView.as_view(), name="account-deposits"),
    path("accounts/<str:number>/withdrawals/", WithdrawalView.as_view(),
         name="account-withdrawals"),
    *router.urls,
]
