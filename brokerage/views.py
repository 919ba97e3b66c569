from django.http import HttpResponse
from django.shortcuts import redirect

from .tenancy import is_staff_member, platform_role_of


def home(request):
    """Staff go to the desk, clients to their portal, everyone else to the login page."""
    if not request.user.is_authenticated:
        return redirect("login")
    if is_staff_member(request.user):
        return redirect("desk-home")
    platform_role = platform_role_of(request.user)
    if platform_role is not None:
        # The platform's people have no firm, so neither the desk nor the portal is theirs.
        return HttpResponse(
            f"Signed in as a platform user ({platform_role}). A platform auditor exports every "
            "firm's audit trail with `manage.py export_audit_trail --all-firms --user "
            f"{request.user.username} --reason ...` (recorded on the platform chain).\n",
            content_type="text/plain; charset=utf-8")
    return redirect("portal-home")
