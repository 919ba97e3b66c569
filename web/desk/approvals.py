"""The desk's approvals pages (see web/desk/__init__.py)."""

from __future__ import annotations

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
