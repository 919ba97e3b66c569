from django.urls import path

from .views import MarginCalculateView

urlpatterns = [
    path("margin/calculate", MarginCalculateView.as_view(), name="margin-calculate"),
]
