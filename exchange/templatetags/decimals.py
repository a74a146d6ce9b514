from __future__ import annotations

from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def plain(value: Decimal) -> str:
    """A Decimal without trailing zeros or exponent: 0.01000000 -> "0.01", 1E+2 -> "100"."""
    return f"{value.normalize():f}"


@register.filter
def signed(value: Decimal | None) -> str:
    """A change with its sign: +1.25, -0.50, 0.00 (as many places as the value has)."""
    if value is None:
        return ""
    return f"+{value:f}" if value > 0 else f"{value:f}"
