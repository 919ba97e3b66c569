"""The portal layout's tags: the firm the page is served for."""

from __future__ import annotations

from django import template

from brokerage.scope import current_firm_or_none

register = template.Library()


@register.simple_tag
def firm_name() -> str:
    firm = current_firm_or_none()
    return firm.name if firm is not None else "Portfolio-margin back office"
