"""The desk's compliance section (issue 19): the audit trail's search, its export with the
signed manifest, the chain's verification beside its latest checkpoint, and the daily margin-call
record (FINRA 4220) and margin report; what needs compliance now on the home page (home_items).
"""

from __future__ import annotations

from django.urls import path

from . import (
    home_items,  # noqa: F401  (registers the section's home items)
    views,
)

urlpatterns = [
    path("", views.compliance_home, name="desk-compliance"),
    path("trail/", views.trail, name="desk-compliance-trail"),
    path("export/", views.export, name="desk-compliance-export"),
    path("exports/<int:seq>/", views.export_detail, name="desk-compliance-export-detail"),
    path("exports/<int:seq>/file", views.export_file, name="desk-compliance-export-file"),
    path("exports/<int:seq>/manifest", views.export_manifest,
         name="desk-compliance-export-manifest"),
    path("chain/", views.chain, name="desk-compliance-chain"),
    path("margin-record/", views.margin_record, name="desk-compliance-margin-record"),
    path("margin-report/", views.margin_report, name="desk-compliance-margin-report"),
]
