"""Reads of the projected orders and trades. A user only ever sees their own orders and fills."""

from __future__ import annotations

from collections.abc import Collection

from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from matching.engine.types import OrderStatus
from matching.models import Order, ProjectionCursor, Trade


def order_list(*, user: User, status: OrderStatus | Collection[OrderStatus] | None = None,
               symbol: str | None = None) -> QuerySet[Order]:  # fmt: skip
    """The user's orders, newest first, optionally of one status (or any of several) and/or symbol."""
    orders = Order.objects.filter(user=user)
    if isinstance(status, OrderStatus):
        orders = orders.filter(status=status)
    elif status is not None:
        orders = orders.filter(status__in=list(status))
    if symbol is not None:
        orders = orders.filter(symbol=symbol)
    return orders.order_by("-created_seq")


def order_get(*, user: User, order_id: int) -> Order | None:
    """The user's order; None if it does not exist or belongs to someone else (answer 404 alike)."""
    return Order.objects.filter(user=user, order_id=order_id).first()


def order_get_by_client_id(*, user: User, symbol: str, client_order_id: str) -> Order | None:
    """Client order ids are unique per user and symbol (retries are always for the same symbol)."""
    return Order.objects.filter(user=user, symbol=symbol, client_order_id=client_order_id).first()


def trade_list(*, symbol: str, limit: int) -> QuerySet[Trade]:
    """The symbol's last `limit` trades, newest first (public: no user ids are needed to show them)."""
    return Trade.objects.filter(symbol=symbol).order_by("-trade_id")[:limit]


def fill_list(*, user: User, symbol: str | None = None) -> QuerySet[Trade]:
    """Trades in which the user took or made liquidity (or both, a self-trade), newest first."""
    fills = Trade.objects.filter(Q(taker_user=user) | Q(maker_user=user))
    if symbol is not None:
        fills = fills.filter(symbol=symbol)
    return fills.order_by("-seq", "-id")


def projected_seq(*, cursor_name: str) -> int:
    """The last matcher seq written into the ORM for one stream (0 when nothing was)."""
    return ProjectionCursor.objects.filter(name=cursor_name).values_list("last_seq", flat=True).first() or 0
