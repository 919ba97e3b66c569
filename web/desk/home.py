"""The desk's home: what needs the staff member now, by role (see web/desk/__init__.py)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from .access import desk_view


@desk_view()
def desk_home(request: HttpRequest) -> HttpResponse:
    return render(request, "desk/home.html", {"section": "desk-home"})


urlpatterns = [path("", desk_home, name="desk-home")]
