"""The embedded default: one matcher thread inside the server process, fed by a bounded queue.

The thread drains whatever is queued (up to `max_batch`) into one `Matcher.process` call, so
one fsync covers the whole batch (group commit) and the queue never waits on a disk flush per
order. Replies go back through futures; listeners (the projector, the market-data cache) see
every batch after its callers have been answered.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from matching.engine import Command
from matching.worker.bus import Unavailable
from matching.worker.matcher import Matcher, Reply

log = logging.getLogger(__name__)

Listener = Callable[[list[Reply]], None]
_STOP = object()


class EmbeddedBus:
    def __init__(self, matcher: Matcher, *, max_queue: int = 10_000, max_batch: int = 1_000) -> None:
        self.matcher = matcher
        self.max_batch = max_batch
        self.failure: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(max_queue)
        self._listeners: list[Listener] = []
        self._thread = threading.Thread(target=self._run, name=f"matcher-{matcher.shard}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(replies)` on the matcher thread after each batch; keep it quick."""
        self._listeners.append(listener)

    # ---- CommandBus -------------------------------------------------------------------------

    def submit(self, cmd: Command, timeout: float) -> Reply:
        future = self.enqueue(cmd)
        try:
            return future.result(timeout)
        except TimeoutError:
            raise Unavailable("the matcher did not answer in time") from None

    async def submit_async(self, cmd: Command, timeout: float) -> Reply:
        future = asyncio.wrap_future(self.enqueue(cmd))
        try:
            # shield: a caller that gives up must not cancel a command the matcher may be applying
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Unavailable("the matcher did not answer in time") from None

    def health(self) -> dict:
        return {
            "status": "ok" if self._thread.is_alive() and self.failure is None else "down",
            "mode": "embedded",
            "seq": self.matcher.seq,
            "queue_depth": self._queue.qsize(),
            **({"error": repr(self.failure)} if self.failure is not None else {}),
        }

    # ---- the matcher thread -------------------------------------------------------------------

    def enqueue(self, cmd: Command) -> Future:
        """Queue a command; its Future resolves to the Reply. Raises Unavailable at once if it cannot."""
        if self.failure is not None or not self._thread.is_alive():
            raise Unavailable("the matcher is not running", retry_after=5.0)
        future: Future = Future()
        try:
            self._queue.put_nowait((cmd, future))
        except queue.Full:
            raise Unavailable("the matcher queue is full") from None
        return future

    def _take_batch(self) -> tuple[list[tuple[Command, Future]], bool]:
        item = self._queue.get()
        if item is _STOP:
            return [], True
        batch = [item]
        while len(batch) < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _fail_waiting(self, batch: list[tuple[Command, Future]]) -> None:
        """Answer the failed batch and everything still queued, rather than let callers time out."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                batch.append(item)
        for _, future in batch:
            future.set_exception(Unavailable("the matcher failed", retry_after=5.0))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._take_batch()
            if not batch:
                continue
            try:
                replies = self.matcher.process([cmd for cmd, _ in batch])
            except BaseException as exc:  # a failed journal write: stop taking commands
                log.exception("matcher failed; no further commands are accepted")
                self.failure = exc
                self._fail_waiting(batch)
                return
            for (_, future), reply in zip(batch, replies, strict=True):
                future.set_result(reply)
            for listener in self._listeners:
                try:
                    listener(replies)
                except Exception:
                    log.exception("matcher listener %r failed", listener)
