"""The API's answers as serializers, for the OpenAPI schema (drf-spectacular) and nothing else:
the views build plain dicts; these say what shape they have."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample
from rest_framework import serializers as s

from matching.engine import OrderStatus


class Error(s.Serializer):
    code = s.CharField(help_text="machine-readable, e.g. invalid_request, post_only_would_take")
    message = s.CharField()
    # DRF's serializer metaclass takes declared fields off the class: no clash with `Serializer.fields`.
    fields = s.DictField(required=False, help_text="per field, for invalid_request (an unknown field: "  # type: ignore[assignment]
                                                   '"unknown field")')
    order_id = s.IntegerField(required=False, help_text="422: the order refused (or not amended)")
    status = s.CharField(required=False, help_text="422 for a new order: rejected (it is recorded)")
    max_quantity = s.CharField(required=False, help_text="order_size: the largest order allowed")
    max_position = s.CharField(required=False, help_text="position_limit: the largest position allowed")
    price_band_pct = s.CharField(required=False, help_text="price_band: how far from the last trade price")


class Fill(s.Serializer):
    trade_id = s.CharField(help_text="SYMBOL-n")
    price = s.CharField()
    quantity = s.CharField()
    timestamp = s.DateTimeField()


# what an answer's status can be: the order statuses but rejected (a refusal is a 422)
ORDER_OUTCOMES = [status.value for status in OrderStatus if status is not OrderStatus.REJECTED]


class SubmitResult(s.Serializer):
    success = s.BooleanField()
    order_id = s.IntegerField()
    status = s.ChoiceField([*ORDER_OUTCOMES, "duplicate"])
    duplicate = s.BooleanField(required=False)
    cancel_reason = s.CharField(allow_null=True, required=False)
    trades = Fill(many=True)
    remaining_quantity = s.CharField(allow_null=True)
    latency_us = s.IntegerField()


class CancelResult(s.Serializer):
    success = s.BooleanField()
    order_id = s.IntegerField()
    status = s.CharField()
    canceled_quantity = s.CharField()


class Level(s.Serializer):
    price = s.CharField()
    quantity = s.CharField()


class Book(s.Serializer):
    symbol = s.CharField()
    seq = s.IntegerField(help_text="the matcher seq of the last change: gaps mean missed updates")
    bids = Level(many=True)
    asks = Level(many=True)


class PublicTrade(s.Serializer):
    trade_id = s.CharField()
    price = s.CharField()
    quantity = s.CharField()
    taker_side = s.CharField()
    timestamp = s.DateTimeField()


class Ticker(s.Serializer):
    symbol = s.CharField()
    seq = s.IntegerField()
    last = s.CharField(allow_null=True)
    best_bid = s.CharField(allow_null=True)
    best_ask = s.CharField(allow_null=True)
    open_24h = s.CharField(allow_null=True)
    high_24h = s.CharField(allow_null=True)
    low_24h = s.CharField(allow_null=True)
    volume_24h = s.CharField()


class InstrumentInfo(s.Serializer):
    symbol = s.CharField()
    name = s.CharField()
    tick_size = s.CharField()
    lot_size = s.CharField()
    status = s.CharField()


class OrderInfo(s.Serializer):
    order_id = s.IntegerField()
    client_order_id = s.CharField(allow_null=True)
    symbol = s.CharField()
    side = s.CharField()
    type = s.CharField()
    time_in_force = s.CharField()
    status = s.CharField()
    price = s.CharField(allow_null=True)
    stop_price = s.CharField(allow_null=True)
    quantity = s.CharField()
    filled_quantity = s.CharField()
    remaining_quantity = s.CharField()
    canceled_quantity = s.CharField()
    average_price = s.CharField(allow_null=True)
    reject_reason = s.CharField(allow_null=True)
    cancel_reason = s.CharField(allow_null=True)
    created_at = s.DateTimeField()
    updated_at = s.DateTimeField()


class Ping(s.Serializer):
    pong = s.BooleanField()
    username = s.CharField()


class TokenResult(s.Serializer):
    token = s.CharField()


class AmendResult(s.Serializer):
    """POST /api/submit's answer for the amended order as the amendment left it, and the new terms."""

    success = s.BooleanField()
    order_id = s.IntegerField()
    status = s.ChoiceField(ORDER_OUTCOMES)
    cancel_reason = s.CharField(allow_null=True)
    trades = Fill(many=True, help_text="trades the amendment caused (a new price may cross)")
    remaining_quantity = s.CharField()
    latency_us = s.IntegerField()
    kept_priority = s.BooleanField()
    price = s.CharField(allow_null=True)
    stop_price = s.CharField(allow_null=True)
    quantity = s.CharField(help_text="the new total quantity")


class MyFill(s.Serializer):
    trade_id = s.CharField()
    order_id = s.IntegerField()
    symbol = s.CharField()
    side = s.CharField()
    liquidity = s.ChoiceField(["taker", "maker"])
    price = s.CharField()
    quantity = s.CharField()
    timestamp = s.DateTimeField()


class CancelAllResult(s.Serializer):
    success = s.BooleanField()
    canceled = s.ListField(child=s.IntegerField())
    not_open = s.ListField(child=s.IntegerField(), help_text="filled or canceled meanwhile")


class Candle(s.Serializer):
    start = s.DateTimeField(help_text="the bucket's start (UTC): a multiple of the interval")
    open = s.CharField()
    high = s.CharField()
    low = s.CharField()
    close = s.CharField()
    volume = s.CharField(help_text="quantity traded in the bucket")
    trades = s.IntegerField(help_text="number of trades in the bucket")


class PositionInfo(s.Serializer):
    symbol = s.CharField()
    quantity = s.CharField(help_text="signed: short below zero")
    average_price = s.CharField(allow_null=True, help_text="open position's cost per unit; null when flat")
    last_price = s.CharField(allow_null=True, help_text="the last trade's price; null before the first trade")
    market_value = s.CharField(allow_null=True, help_text="quantity x last price")
    realised_pnl = s.CharField()
    unrealised_pnl = s.CharField(allow_null=True, help_text="against the last trade price (average cost)")


class AccountInfo(s.Serializer):
    user_id = s.IntegerField()
    username = s.CharField()
    cash = s.CharField()
    reserved = s.CharField(help_text="held back for open buy orders")
    available = s.CharField(help_text="cash - reserved: what new buy orders may spend")
    stp_default = s.CharField(help_text="self-trade prevention for orders that do not name one")
    positions = PositionInfo(many=True)


class StageSummary(s.Serializer):
    unit = s.CharField(help_text="us (microseconds) for times; commands for batch sizes")
    count = s.IntegerField(help_text="values recorded since the process started")
    mean = s.FloatField()
    p50 = s.FloatField()
    p90 = s.FloatField()
    p99 = s.FloatField()
    p999 = s.FloatField(help_text="the 99.9th percentile")
    max = s.FloatField()


class Rates(s.Serializer):
    last_1s = s.FloatField(help_text="commands per second over the last second")
    last_10s = s.FloatField(help_text="commands per second over the last 10 seconds")
    last_60s = s.FloatField(help_text="commands per second over the last minute")
    total = s.IntegerField(help_text="commands since the matcher process started")


class ShardPerformance(s.Serializer):
    shard = s.IntegerField()
    status = s.CharField(help_text="ok, down, overloaded, or unknown (Redis unreachable)")
    seq = s.IntegerField(allow_null=True, help_text="the last command the matcher applied")
    queue_depth = s.IntegerField(allow_null=True, help_text="commands waiting for the matcher")
    age_seconds = s.FloatField(allow_null=True, help_text="of the heartbeat these figures came with "
                                                          "(production); null in the embedded mode")
    uptime_seconds = s.FloatField(allow_null=True, help_text="of the matcher's process")
    throughput = Rates(allow_null=True)
    batch_size = StageSummary(allow_null=True, help_text="commands per matcher batch")
    stages = s.DictField(child=StageSummary(), help_text="matcher.* stages by name")


class GcGeneration(s.Serializer):
    collections = s.IntegerField()
    collected = s.IntegerField(help_text="objects freed")


class GcFigures(s.Serializer):
    thresholds = s.ListField(child=s.IntegerField(), help_text="Python's gc thresholds (GC_YOUNG_THRESHOLD)")
    frozen_objects = s.IntegerField(help_text="the heap of startup, frozen out of collections")
    generations = GcGeneration(many=True)


class SystemPerformance(s.Serializer):
    mode = s.ChoiceField(["embedded", "redis"])
    uptime_seconds = s.FloatField(help_text="of this web process")
    throughput = Rates(help_text="commands per second, all shards together")
    shards = ShardPerformance(many=True)
    stages = s.DictField(child=StageSummary(),
                         help_text="this web process's stages by name: api.<view>.<method> (server time of a "
                                   "request), bus.ack_sync and bus.ack_async (submit to reply)")
    gc = GcFigures(help_text="this web process's garbage collector")


class BatchRequest(s.Serializer):
    orders = s.ListField(child=s.DictField(), min_length=1, max_length=100,
                         help_text="each in the shape of POST /api/submit's body, validated on its own")


class BatchItemResult(s.Serializer):
    """Either a submit result (success true) or an error (success false, code, message, ...)."""

    index = s.IntegerField(help_text="the order's position in the request")
    http_status = s.IntegerField(help_text="what POST /api/submit would have answered: 201, or the error's")
    success = s.BooleanField()
    order_id = s.IntegerField(required=False)
    status = s.CharField(required=False, help_text="the order's status (rejected for a refused order)")
    duplicate = s.BooleanField(required=False)
    cancel_reason = s.CharField(allow_null=True, required=False)
    trades = Fill(many=True, required=False)
    remaining_quantity = s.CharField(allow_null=True, required=False)
    latency_us = s.IntegerField(required=False)
    code = s.CharField(required=False,
                       help_text="errors: invalid_request, rate_limited, matcher_unavailable, or the reason")
    message = s.CharField(required=False)
    fields = s.DictField(required=False, help_text="per field, for invalid_request")  # type: ignore[assignment]  # as in Error
    retry_after = s.IntegerField(required=False, help_text="seconds (rate_limited, matcher_unavailable)")


class BatchResult(s.Serializer):
    succeeded = s.IntegerField()
    failed = s.IntegerField()
    results = BatchItemResult(many=True)


# Request examples that succeed as they stand on the running demo (`./scripts/run.sh`: the market maker
# quotes AAPL near 190), so Swagger's "Try it out" opens on a body that works.
# exchange/tests/api/test_schema.py sends each one.
def _example(name: str, value: dict, description: str = "") -> OpenApiExample:
    return OpenApiExample(name, value=value, description=description, request_only=True)


SUBMIT_EXAMPLES = [
    _example("A limit buy below the market (rests)",
             {"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "180.00"}),
    _example("A market buy (fills against the market maker)",
             {"symbol": "AAPL", "side": "buy", "type": "market", "quantity": "5"}),
    _example("A stop-limit sell", {"symbol": "AAPL", "side": "sell", "type": "stop_limit", "quantity": "10",
                                   "stop_price": "175.00", "price": "174.50"}),
    _example("The seed's shape (order_type, JSON numbers)",
             {"symbol": "AAPL", "side": "buy", "order_type": "limit", "price": 180.5, "quantity": 10}),
]
BATCH_EXAMPLES = [_example("Two orders", {"orders": [
    {"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "180.00", "client_order_id": "ladder-1"},
    {"symbol": "AAPL", "side": "buy", "quantity": "10", "price": "179.50", "client_order_id": "ladder-2"},
]})]
AMEND_EXAMPLES = [_example("A new price", {"price": "181.50"}),
                  _example("A smaller total quantity (keeps its place in the queue)", {"quantity": "5"})]
TOKEN_EXAMPLES = [_example("The demo user", {"username": "demo", "password": "demo"})]
ACCOUNT_EXAMPLES = [_example("Self-trade prevention default", {"stp_default": "cancel_newest"})]
