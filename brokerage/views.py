from django.shortcuts import redirect

from .tenancy import is_staff_member


def home(request):
    """Staff go to the desk, clients to their portal, everyone else to the login page."""
    if not request.user.is_authenticated:
        return redirect("login")
    return redirect("admin:index" if is_staff_member(request.user) or request.user.is_superuser
                    else "portal-home")
