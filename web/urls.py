"""The client portal's pages, mounted at /portal/ by the root urls.

The names stay global (`portal-home`, `portal-account`): the portal's templates and the home
redirect use them.
"""

from django.urls import path

from . import views

urlpatterns = [
    path("", views.portal_home, name="portal-home"),
    path("accounts/<str:number>/", views.portal_account, name="portal-account"),
]
