"""The desk's pages, mounted at /desk/ by the root urls; each section's module holds its own."""

from django.urls import include, path

from . import accounts, approvals, calls, compliance, home, risk, staff

urlpatterns = [
    path("", include(home.urlpatterns)),
    path("approvals/", include(approvals.urlpatterns)),
    path("calls/", include(calls.urlpatterns)),
    path("accounts/", include(accounts.urlpatterns)),
    path("risk/", include(risk.urlpatterns)),
    path("compliance/", include(compliance.urlpatterns)),
    path("staff/", include(staff.urlpatterns)),
]
