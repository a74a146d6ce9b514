"""Enums shared by the engine, the worker, the API and the UI.

Values are short lowercase strings so they serialize to JSON unchanged and read well in
logs and the admin.
"""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    STOP = "stop"  # becomes a market order when triggered
    STOP_LIMIT = "stop_limit"  # becomes a limit order when triggered


class TimeInForce(StrEnum):
    GTC = "gtc"  # good till canceled
    IOC = "ioc"  # immediate or cancel: fill what it can now, cancel the rest
    FOK = "fok"  # fill or kill: fill completely now or not at all
    DAY = "day"  # expires at the session end carried in the command (expire_at)
    GTD = "gtd"  # expires at the time carried in the command (expire_at)


class STPMode(StrEnum):
    """Self-trade prevention: what happens when a taker meets a resting order of the same owner.

    The taker's mode decides, as on most exchanges.
    """

    NONE = "none"  # allow the self-trade
    CANCEL_NEWEST = "cancel_newest"  # cancel the incoming order's remainder
    CANCEL_OLDEST = "cancel_oldest"  # cancel the resting order, keep matching
    CANCEL_BOTH = "cancel_both"
    DECREMENT = "decrement"  # reduce both by the smaller quantity, no trade


class OrderStatus(StrEnum):
    PENDING = "pending"  # a stop order waiting for its trigger
    OPEN = "open"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    HELD = "held"  # held for admin review by risk (never inside the engine)


class RejectReason(StrEnum):
    UNKNOWN_SYMBOL = "unknown_symbol"
    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_STOP_PRICE = "invalid_stop_price"
    INVALID_EXPIRY = "invalid_expiry"
    INVALID_OPTIONS = "invalid_options"
    DUPLICATE_ORDER_ID = "duplicate_order_id"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    STOP_WOULD_TRIGGER = "stop_would_trigger"
    UNKNOWN_ORDER = "unknown_order"
    NOT_AMENDABLE = "not_amendable"
    POSITION_LIMIT = "position_limit"
    ORDER_SIZE = "order_size"
    PRICE_BAND = "price_band"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    HALTED = "halted"
    HELD_REJECTED = "held_rejected"  # an admin rejected a held order


class CancelReason(StrEnum):
    USER = "user"
    IOC = "ioc"  # remainder of an immediate-or-cancel order
    FOK = "fok"  # fill-or-kill that could not fill completely
    NO_LIQUIDITY = "no_liquidity"  # remainder of a market order
    SELF_TRADE = "self_trade"  # self-trade prevention
