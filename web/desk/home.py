"""The desk's home: what needs the staff member now, by role (web/desk/attention.py collects
each section's items)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path

from .access import desk_view
from .attention import needs_attention


@desk_view()
def desk_home(request: HttpRequest) -> HttpResponse:
    items = needs_attention(request, request.desk_role)
    return render(request, "desk/home.html", {"section": "desk-home", "items": items})


urlpatterns = [path("", desk_home, name="desk-home")]
