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
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import schemas
from exchange.api.entry import OrderForms, Placement, place
from exchange.api.errors import ApiError, body
from exchange.api.throttles import take_order_tokens
from exchange.api.views import ERRORS
from exchange.users import signed_in_user
from matching.worker.bus import Unavailable

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
        valid: list[tuple[int, Placement]] = []
        forms = OrderForms()
        for index, item in enumerate(items):
            try:
                valid.append((index, forms.prepare(user_id=user_id, data=item, started_ns=started)))
            except ValidationError as invalid:
                results[index] = failure(index, 400, "invalid_request", "the order is not valid: see fields",
                                         fields=invalid.detail)

        granted, wait = take_order_tokens(request, len(valid))
        if granted < len(valid):
            retry_after = max(1, math.ceil(wait or 1))
            for index, _ in valid[granted:]:
                results[index] = failure(index, 429, "rate_limited", "over the order rate limit; not sent",
                                         retry_after=retry_after)
            valid = valid[:granted]

        outcomes = place([placement for _, placement in valid]) if valid else []
        for (index, _), outcome in zip(valid, outcomes, strict=True):
            if isinstance(outcome, dict):
                results[index] = {"index": index, "http_status": 201, **outcome}
            elif isinstance(outcome, Unavailable):
                results[index] = failure(index, 503, "matcher_unavailable", f"{outcome}; retry later",
                                         retry_after=max(1, math.ceil(outcome.retry_after)))
            elif isinstance(outcome, ApiError):  # the engine or the risk stage rejected the order
                results[index] = failure(index, outcome.status_code, outcome.code, str(outcome.detail),
                                         **outcome.extra)
            else:
                raise outcome
        succeeded = sum(1 for result in results if result is not None and result["success"])
        return Response({"succeeded": succeeded, "failed": len(results) - succeeded, "results": results})


def failure(index: int, http_status: int, code: str, message: str, **extra: Any) -> dict[str, Any]:
    """One order's error: the API's error shape with its index and the status a single submit gets."""
    return {"index": index, "http_status": http_status, "success": False, **body(code, message, **extra)}
