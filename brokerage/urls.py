from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from rest_framework.routers import SimpleRouter

from . import login_views, views
from .api_views import (
    ApiDocsView,
    ApiRedocView,
    ApiRootView,
    ApiTokenViewSet,
    AuditEventListView,
    AuditExportManifestView,
    AuditExportView,
    FirmView,
    SchemaView,
)

core = SimpleRouter()
core.register("tokens", ApiTokenViewSet, basename="api-token")

api_v1 = [
    path("", include("margin.api.urls")),
    path("", include("eligibility.api.urls")),
    path("audit/export", AuditExportView.as_view(), name="audit-export"),
    path("audit/export/<str:seq>/manifest", AuditExportManifestView.as_view(),
         name="audit-export-manifest"),
    path("audit/events", AuditEventListView.as_view(), name="audit-events"),
    path("firm", FirmView.as_view(), name="firm"),
    *core.urls,
]
# The root lists every route above without parameters (and the schema beside it).
api_v1.insert(0, path("", ApiRootView.as_view(patterns=list(api_v1), extra={
    "schema": "schema", "docs": "api-docs", "docs/redoc": "api-redoc"}), name="api-root"))

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    path("portal/", include("web.urls")),
    path("desk/", include("web.desk.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/otp/", login_views.otp_verify, name="otp-verify"),
    path("accounts/otp/enrol/", login_views.otp_enrol, name="otp-enrol"),
    path("accounts/invitation/<str:uidb64>/<str:token>/", login_views.invitation_accept,
         name="invitation-accept"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("", include("operations.urls")),  # /healthz, /readyz, /metrics (issue 17)
    # The documentation, its assets served from here (drf-spectacular-sidecar): no network,
    # and no inline script, so a strict Content-Security-Policy holds.
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    path("api/docs/redoc/", ApiRedocView.as_view(url_name="schema"), name="api-redoc"),
]

# Outside DRF's views (an unmatched URL, an unhandled exception), /api/ still answers JSON.
handler404 = "brokerage.api_errors.page_not_found"
handler500 = "brokerage.api_errors.server_error"
