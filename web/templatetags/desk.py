"""The desk layout's tags: the navigation bar for the staff member's role."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html

from web.desk.nav import SECTIONS

register = template.Library()


@register.simple_tag(takes_context=True)
def desk_sections(context) -> list[dict]:
    """The sections the request's role may open, each with its URL and whether it is current."""
    request = context["request"]
    role = getattr(request, "desk_role", None)
    current = context.get("section", "")
    sections = []
    for section in SECTIONS:
        if role not in section.roles:
            continue
        sections.append({"url": reverse(section.url_name), "label": section.label,
                         "current": section.url_name == current})
    return sections


@register.filter
def account_link(account) -> str:
    """The account's number linked to its 360 page on the desk (every section links accounts
    this way)."""
    return format_html('<a href="{}">{}</a>', reverse("desk-account", args=[account.number]),
                       account.number)
