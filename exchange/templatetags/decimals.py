from decimal import Decimal

from django import template

register = template.Library()


@register.filter
def plain(value: Decimal) -> str:
    """A Decimal without trailing zeros or exponent: 0.01000000 -> "0.01", 1E+2 -> "100"."""
    return f"{value.normalize():f}"
