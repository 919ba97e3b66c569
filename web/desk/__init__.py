"""The staff desk at /desk/: where a firm's staff work (the admin stays for data administration).

One module per section, each with its own ``urlpatterns`` (web/desk/urls.py mounts them):
home (what needs me now), approvals, calls (the margin-call desk), accounts (the 360 view),
risk (firm risk and the firm-wide simulator), compliance, staff (firm admin). Every view is a
``desk_view`` (web/desk/access.py): staff of the firm only, by role; a staff member without the
role gets a 403, another firm's object a 404 (tenant querysets never see it).
"""
