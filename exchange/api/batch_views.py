"""POST /api/orders/batch: up to 100 orders in one request, each validated and answered on its own.

    {"orders": [<a POST /api/submit body>, ...]}
 -> 200 {"succeeded": n, "failed": m, "results": [{"index": i, "http_status": 201, "success": true,
                                                    <POST /api/submit's result>} |
                                                   {"index": i, "http_status": 4xx/503, "success": false,
                                                    "code": ..., "message": ..., ...}, ...]}

One bad order never fails the others: each is validated alone and gets the result or the error a
single submit would have answered (http_status says which), in request order. The valid ones go
to the matcher together: in the embedded mode as one batch (one journal commit), in production as
one pipeline per shard; a repeated client_order_id within the batch is a duplicate of the first.

The request as a whole fails only when it cannot be read: not signed in (401), no "orders" list
(400 invalid_request), more than 100 (400 too_many_orders), no order budget left at all (429), or the
matcher refusing to take any of them (503, nothing sent).

Rate limit: each order takes one token of the submit budget (`take_order_tokens`, the same counter as
POST /api/submit: 10 orders a second by default), so a batch cannot get past it. Orders beyond the
budget left are answered `rate_limited` with `retry_after`, in request order, and not sent; invalid
orders cost nothing. The request itself counts once toward the burst and sustained call limits.
"""

from __future__ import annotations

import math
import time
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import schemas
from exchange.api.entry import submit_outcome
from exchange.api.errors import ApiError, body
from exchange.api.serializers import OrderRequest, order_spec
from exchange.api.throttles import take_order_tokens
from exchange.api.views import ERRORS
from exchange.models import Instrument
from exchange.users import signed_in_user
from matching import services
from matching.engine import STPMode
from matching.worker.bus import Unavailable
from risk import selectors as risk_selectors

MAX_ORDERS = 100


class BatchSubmitView(APIView):
    """POST /api/orders/batch: place up to 100 orders; per order its outcome or its error."""

    throttle_scope = "submit"  # the order budget (exchange/api/throttles.py)...
    throttle_per_order = True  # ...of which each order takes one token (take_order_tokens)

    @extend_schema(request=schemas.BatchRequest, responses={200: schemas.BatchResult, **ERRORS},
                   examples=schemas.BATCH_EXAMPLES)
    def post(self, request: Request) -> Response:
        started = time.perf_counter_ns()
        user_id = signed_in_user(request).pk
        items = request.data.get("orders") if isinstance(request.data, dict) else None
        if not isinstance(items, list) or not items:
            raise ApiError(400, "invalid_request", 'expected {"orders": [order, ...]} with 1 to '
                           f"{MAX_ORDERS} orders in the shape of POST /api/submit")
        if len(items) > MAX_ORDERS:
            raise ApiError(400, "too_many_orders", f"at most {MAX_ORDERS} orders a batch, not {len(items)}",
                           limit=MAX_ORDERS)
        results: list[dict[str, Any] | None] = [None] * len(items)
        valid: list[tuple[int, Instrument, services.OrderSpec]] = []
        stp_default: STPMode | None = None  # read once, and only if an order names no stp
        for index, item in enumerate(items):
            form = OrderRequest(data=item)
            if not form.is_valid():
                results[index] = failure(index, 400, "invalid_request", "the order is not valid: see fields",
                                         fields=form.errors)
                continue
            data = form.validated_data
            if "stp" not in data and stp_default is None:
                stp_default = risk_selectors.stp_default(user_id=user_id)
            spec = order_spec(data, stp_default or STPMode.CANCEL_NEWEST)
            valid.append((index, data["instrument"], spec))

        granted, wait = take_order_tokens(request, len(valid))
        if granted < len(valid):
            retry_after = max(1, math.ceil(wait or 1))
            for index, _, _ in valid[granted:]:
                results[index] = failure(index, 429, "rate_limited", "over the order rate limit; not sent",
                                         retry_after=retry_after)
            valid = valid[:granted]

        replies = services.order_submit_many(user_id=user_id, orders=[spec for _, _, spec in valid]
                                             ) if valid else []
        for (index, instrument, _), reply in zip(valid, replies, strict=True):
            if isinstance(reply, Unavailable):
                results[index] = failure(index, 503, "matcher_unavailable", f"{reply}; retry later",
                                         retry_after=max(1, math.ceil(reply.retry_after)))
                continue
            try:
                outcome = submit_outcome(reply, instrument, started)
            except ApiError as refusal:  # the engine or the risk stage rejected the order
                results[index] = failure(index, refusal.status_code, refusal.code, str(refusal.detail),
                                         **refusal.extra)
                continue
            results[index] = {"index": index, "http_status": 201, **outcome}
        # a read after this answer sees the orders and their fills
        services.projection_catch_up([r for r in replies if not isinstance(r, Unavailable)])
        succeeded = sum(1 for result in results if result is not None and result["success"])
        return Response({"succeeded": succeeded, "failed": len(results) - succeeded, "results": results})


def failure(index: int, http_status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """One order's error: the API's error shape with its index and the status a single submit gets."""
    return {"index": index, "http_status": http_status, "success": False, **body(code, message, **extra)}
