"""The client portal's pages, mounted at /portal/ by the root urls.

The names stay global (`portal-home`, `portal-account`, ...): the portal's templates and the home
redirect use them.
"""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from . import views

urlpatterns = [
    path("", views.portal_home, name="portal-home"),
    # Logging out of the portal goes back to the portal's login (not the admin's).
    path("logout/", auth_views.LogoutView.as_view(next_page="/accounts/login/?next=/portal/"),
         name="portal-logout"),
    path("password/", auth_views.PasswordChangeView.as_view(
        template_name="portal/password_change.html",
        success_url=reverse_lazy("portal-password-done")), name="portal-password"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="portal/password_done.html"), name="portal-password-done"),
    path("accounts/<str:number>/", views.portal_account, name="portal-account"),
    path("accounts/<str:number>/why/", views.portal_why, name="portal-why"),
    path("accounts/<str:number>/calls/", views.portal_calls, name="portal-calls"),
    path("accounts/<str:number>/history/", views.portal_history, name="portal-history"),
    path("accounts/<str:number>/what-if/", views.portal_what_if, name="portal-what-if"),
    path("accounts/<str:number>/distance/", views.portal_distance, name="portal-distance"),
    path("accounts/<str:number>/portfolio-margin/", views.portal_pm, name="portal-pm"),
]
