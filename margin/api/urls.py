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
from .parameters import RiskParameterSetViewSet
from .views import MarginCalculateView

router = SimpleRouter()
router.register("risk-parameters", RiskParameterSetViewSet, basename="risk-parameters")
router.register("margin-calls", MarginCallViewSet, basename="margin-calls")
router.register("accounts", AccountViewSet, basename="accounts")
router.register("call-policies", CallPolicyViewSet, basename="call-policies")
router.register("restrictions", RestrictionViewSet, basename="restrictions")
router.register("executions", ExecutionViewSet, basename="executions")

urlpatterns = [
    path("margin/calculate", MarginCalculateView.as_view(), name="margin-calculate"),
    path("margin-record/", MarginRecordView.as_view(), name="margin-record"),
    path("margin-report/", MarginReportView.as_view(), name="margin-report"),
    # the current margin as the issue names it, without the router's trailing slash
    path("accounts/<str:number>/margin", AccountViewSet.as_view({"get": "margin"}),
         name="account-margin"),
    # the pre-trade check as the issue names it (no trailing slash)
    path("accounts/<str:number>/pre-trade", PreTradeView.as_view(), name="account-pre-trade"),
    *router.urls,
]
