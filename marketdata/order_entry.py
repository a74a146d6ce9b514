"""Order entry over the WebSocket: `order.submit`, `order.cancel`, `order.amend` through exactly the REST
API's functions (`exchange.api.entry`: validation, risk, answers; `throttles.take_call`: rate limits).

Submits are batched across every connection of the process: while a batch is with the matcher, the
submits that arrive wait in one queue and leave together as the next batch (one `OrderForms`, one
`services.order_submit_many`: one journal commit embedded, one pipeline a shard in production; one wait
for the projection). A lone submit on an idle exchange leaves at once, so batching costs it nothing;
under load it is what lets one process answer thousands of orders a second. Each order still gets its
own answer, the one POST /api/submit gives for the same input, and its own rate-limit take.

Cancels and amendments are rarer and go one by one in the same thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import close_old_connections
from rest_framework.exceptions import Throttled

from exchange.api import entry
from exchange.api.errors import ApiError
from exchange.api.throttles import take_call, user_ident
from matching.worker.bus import Unavailable

log = logging.getLogger("marketdata.order_entry")

MAX_BATCH = 256  # submits sent to the matcher together
PARALLEL_BATCHES = 2  # batches in flight at once: one validating while another waits for the matcher
SERVER_ERROR = {"code": "server_error", "message": "the request failed on the server"}

_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ws-orders")

Answer = tuple[int, dict[str, Any]]


def fields(request: dict[str, Any]) -> dict[str, Any]:
    """The request's order fields: all but the protocol's own (`action`, `id`)."""
    return {key: value for key, value in request.items() if key not in ("action", "id")}


def throttled(user_id: int) -> Answer | None:
    """The 429 answer if the user's order budget is spent (one order's worth is taken otherwise)."""
    wait = take_call(user_ident(user_id), orders=True)
    return None if wait <= 0 else entry.failed(Throttled(wait))


def submit_batch(requests: Sequence[tuple[Any, dict[str, Any]]]) -> list[Answer]:
    """(status, body) for each (user, request) of a batch of `order.submit`s, in order: the answers
    POST /api/submit gives. Synchronous (the ORM, the matcher's bus): runs in the pool."""
    close_old_connections()
    answers: list[Answer | None] = [None] * len(requests)
    ready: list[tuple[int, entry.Placement]] = []
    forms = entry.OrderForms()
    for index, (user, request) in enumerate(requests):
        refused = throttled(user.pk)
        if refused is not None:
            answers[index] = refused
            continue
        try:
            ready.append((index, forms.prepare(user_id=user.pk, data=fields(request))))
        except Exception as exc:
            answers[index] = refusal(exc)
    try:
        placed = entry.place([placement for _, placement in ready]) if ready else []
    except Unavailable as exc:  # none could be sent: each order answers 503, as a single submit would
        placed = [exc] * len(ready)
    for (index, _), outcome in zip(ready, placed, strict=True):
        answers[index] = (201, outcome) if isinstance(outcome, dict) else refusal(outcome)
    return [answer if answer is not None else (500, SERVER_ERROR) for answer in answers]


def refusal(exc: Exception) -> Answer:
    """The REST API's status and body for a refusal; a 500 with a code for anything else (a bug,
    logged), which fails only its own order, not the batch."""
    try:
        return entry.failed(exc)
    except Exception:
        log.exception("order request failed")
        return 500, SERVER_ERROR


def order_call(action: str, user: Any, request: dict[str, Any]) -> Answer:
    """One `order.cancel` or `order.amend` (synchronous: runs in the pool)."""
    close_old_connections()
    refused = throttled(user.pk)
    if refused is not None:
        return refused
    data = fields(request)
    order_id = data.pop("order_id", None)
    if isinstance(order_id, bool) or not isinstance(order_id, int) or order_id <= 0:
        return entry.failed(ApiError(400, "invalid_request", "order_id must be a positive whole number"))
    if action == "order.cancel":
        return entry.answer(lambda: entry.cancel(user=user, order_id=order_id))
    return entry.answer(lambda: entry.amend(user=user, order_id=order_id, data=data))


class SubmitBatcher:
    """The process's queue of `order.submit`s waiting for the matcher, in one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: list[tuple[Any, dict[str, Any], asyncio.Future[Answer]]] = []
        self.in_flight = 0
        self.batches = self.orders = 0  # sent so far (how well batching works: orders / batches)
        self.tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def submit(self, user: Any, request: dict[str, Any]) -> Answer:
        future: asyncio.Future[Answer] = self.loop.create_future()
        self.waiting.append((user, request, future))
        self._send()
        return await future

    def _send(self) -> None:
        while self.waiting and self.in_flight < PARALLEL_BATCHES:
            batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
            self.in_flight += 1
            self.batches += 1
            self.orders += len(batch)
            task = self.loop.create_task(self._run(batch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _run(self, batch: list[tuple[Any, dict[str, Any], asyncio.Future[Answer]]]) -> None:
        try:
            answers = await self.loop.run_in_executor(
                _pool, submit_batch, [(user, request) for user, request, _ in batch])
        except Exception:  # a bug or an outage: every order of the batch gets a code, never silence
            log.exception("order batch failed")
            answers = [(500, SERVER_ERROR)] * len(batch)
        finally:
            self.in_flight -= 1
        for (_, _, future), answer in zip(batch, answers, strict=True):
            if not future.done():  # its connection may have gone (the task canceled)
                future.set_result(answer)
        self._send()


_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SubmitBatcher] = weakref.WeakKeyDictionary()


def batcher() -> SubmitBatcher:
    """The running event loop's batcher."""
    loop = asyncio.get_running_loop()
    found = _batchers.get(loop)
    if found is None:
        found = _batchers[loop] = SubmitBatcher(loop)
    return found


async def submit(user: Any, request: dict[str, Any]) -> Answer:
    """One `order.submit`, answered when its batch is."""
    return await batcher().submit(user, request)


async def call(action: str, user: Any, request: dict[str, Any]) -> Answer:
    """One order request of any action: its (status, body)."""
    if action == "order.submit":
        return await submit(user, request)
    return await asyncio.get_running_loop().run_in_executor(_pool, order_call, action, user, request)
