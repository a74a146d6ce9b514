"""What the web tier sees of the matcher: submit a command, get its Reply, or `Unavailable` fast.

Two implementations share this contract: `EmbeddedBus` (a matcher thread in this process) and
the Redis Streams transport (matcher processes per shard). Settings choose; callers never know.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from matching.worker.codec import WorkerCommand
from matching.worker.matcher import Reply


class Unavailable(Exception):
    """The matcher cannot take or answer the command now; retry after `retry_after` seconds.

    The command may still have been applied (e.g. on a timeout): a retry with the same
    client_order_id is safe, and a query by client_order_id tells the truth."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CommandBus(Protocol):
    def submit(self, cmd: WorkerCommand, timeout: float) -> Reply: ...

    async def submit_async(self, cmd: WorkerCommand, timeout: float) -> Reply: ...

    def submit_many(self, cmds: Sequence[WorkerCommand], timeout: float) -> list[Reply | Unavailable]:
        """Several commands sent together (in order per shard), each answered on its own."""
        ...

    def health(self) -> dict: ...
