"""The matching engine core: pure Python, no Django, no I/O, no clock.

Read in this order: types (enums), commands (input), events (output), order (a live order
and a price level), book (matching), stops (pending stop orders), engine (dispatch).
The same source may run compiled by mypyc (see compiled.py); it behaves identically.
"""

from matching.engine.compiled import check_fresh, is_compiled

check_fresh()

from matching.engine.book import MAX_UNITS, OrderBook
from matching.engine.commands import AdvanceTime, AmendOrder, CancelOrder, Command, NewOrder
from matching.engine.engine import MatchingEngine
from matching.engine.events import (
    AmendRejected,
    BookDelta,
    CancelRejected,
    Event,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderReduced,
    OrderRejected,
    StopTriggered,
    Trade,
)
from matching.engine.order import Level, Order
from matching.engine.types import (
    CancelReason,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
    STPMode,
    TimeInForce,
)

__all__ = [
    "MAX_UNITS",
    "AdvanceTime",
    "AmendOrder",
    "AmendRejected",
    "BookDelta",
    "CancelOrder",
    "CancelReason",
    "CancelRejected",
    "Command",
    "Event",
    "Level",
    "MatchingEngine",
    "NewOrder",
    "Order",
    "OrderAccepted",
    "OrderAmended",
    "OrderBook",
    "OrderCanceled",
    "OrderExpired",
    "OrderReduced",
    "OrderRejected",
    "OrderStatus",
    "OrderType",
    "RejectReason",
    "STPMode",
    "Side",
    "StopTriggered",
    "TimeInForce",
    "Trade",
    "is_compiled",
]
