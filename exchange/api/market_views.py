"""Market data read from the matcher's published state (never from SQL): candles."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import schemas
from exchange.api.errors import ApiError
from exchange.api.views import ERRORS, _instrument, bounded_int
from marketdata.candles import INTERVALS, KEPT
from matching import services
from matching.timestamps import to_datetime


class CandlesView(APIView):
    """GET /api/candles/{symbol}?interval=1m&limit=100: OHLCV candles, oldest first (UTC buckets; an
    interval without trades has no candle)."""

    @extend_schema(parameters=[OpenApiParameter("interval", str, enum=list(INTERVALS), default="1m"),
                               OpenApiParameter("limit", {"type": "integer", "minimum": 1, "maximum": KEPT},
                                                description="the newest N candles (default 100)")],
                   responses={200: schemas.Candle(many=True), **ERRORS})
    def get(self, request: Request, symbol: str) -> Response:
        instrument = _instrument(symbol)
        interval = request.query_params.get("interval", "1m")
        if interval not in INTERVALS:
            raise ApiError(400, "invalid_request", f"interval must be one of {', '.join(INTERVALS)}")
        limit = bounded_int(request, "limit", default=100, top=KEPT)
        candles = services.market_data().candles(instrument.symbol, interval, limit)
        price, qty = instrument.ticks_to_price, instrument.lots_to_qty
        return Response([{"start": to_datetime(c.start).isoformat(), "open": str(price(c.open)),
                          "high": str(price(c.high)), "low": str(price(c.low)), "close": str(price(c.close)),
                          "volume": str(qty(c.volume)), "trades": c.trades} for c in candles])
