"""Mounted under /api/v1/ by brokerage/urls.py: applications/ and rule-sets/."""

from rest_framework.routers import SimpleRouter

from .views import ApplicationViewSet, RuleSetViewSet

router = SimpleRouter()
router.register("applications", ApplicationViewSet, basename="pm-application")
router.register("rule-sets", RuleSetViewSet, basename="rule-set")

urlpatterns = router.urls
