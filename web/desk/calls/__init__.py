"""The margin-call desk at /desk/calls/ (issue 19; see web/desk/calls/views.py): its pages and
its items on the desk's home (web/desk/calls/attention.py)."""

from __future__ import annotations

from django.urls import path

from . import (
    attention,  # noqa: F401  (registers the home's items)
    views,
)

urlpatterns = [
    path("", views.call_list, name="desk-calls"),
    path("<int:pk>/", views.call_detail, name="desk-call"),
    path("<int:pk>/satisfactions/", views.record_satisfaction, name="desk-call-satisfy"),
    path("<int:pk>/extension/", views.request_extension, name="desk-call-extension"),
    path("<int:pk>/extension/decision/", views.decide_extension,
         name="desk-call-extension-decision"),
    path("<int:pk>/extension/outcome/", views.record_extension_outcome,
         name="desk-call-extension-outcome"),
    path("<int:pk>/restrictions/<int:restriction_pk>/waiver/", views.request_waiver,
         name="desk-call-waiver"),
    path("<int:pk>/restrictions/<int:restriction_pk>/waiver/decision/", views.decide_waiver,
         name="desk-call-waiver-decision"),
    path("<int:pk>/plan/", views.plan_detail, name="desk-call-plan"),
    path("<int:pk>/plan/propose/", views.propose_plan, name="desk-call-plan-propose"),
    path("<int:pk>/plan/decision/", views.decide_plan, name="desk-call-plan-decision"),
]
