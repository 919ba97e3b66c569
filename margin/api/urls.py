from django.urls import path
from rest_framework.routers import SimpleRouter

from .parameters import RiskParameterSetViewSet
from .views import MarginCalculateView

router = SimpleRouter()
router.register("risk-parameters", RiskParameterSetViewSet, basename="risk-parameters")

urlpatterns = [
    path("margin/calculate", MarginCalculateView.as_view(), name="margin-calculate"),
    *router.urls,
]
