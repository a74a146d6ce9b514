"""How far each shard's projection has written, pushed over Redis instead of polled from the database.

A shard's projector, after each committed batch, calls `announce(seq)` (a `ProjectionAnnouncer`): one
pipeline that SETs `{prefix}:projected:{shard}` and PUBLISHes "{shard} {seq}" on `{prefix}:projected`.
A web process keeps one `ProjectionWatch`: a thread subscribed to that channel, holding the newest seq
per shard, which request threads wait on (read-your-writes: an order's answer waits until the projection
holds it). It subscribes first and then reads the keys, so no announcement falls between the two; after
a lost connection it does the same again.

The database's ProjectionCursor stays the truth: the announcement is only a hint of when to look, and
while the watch is not connected (`wait` answers None) callers poll the cursor as before.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

log = logging.getLogger(__name__)

_RETRY = 0.5  # seconds between reconnection attempts


def projected_key(prefix: str, shard: int) -> str:
    return f"{prefix}:projected:{shard}"


def projected_channel(prefix: str) -> str:
    return f"{prefix}:projected"


class ProjectionAnnouncer:
    """The projector's `on_written` in a shard process: tells every web process how far it has written."""

    def __init__(self, client: redis.Redis, prefix: str, shard: int) -> None:
        self.client, self.shard = client, shard
        self.key, self.channel = projected_key(prefix, shard), projected_channel(prefix)

    def __call__(self, seq: int) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.set(self.key, seq)
            pipe.publish(self.channel, f"{self.shard} {seq}")
            pipe.execute()
        except redis.RedisError as exc:  # web processes then poll the database until the next one
            log.warning("shard %d: projection seq %d not announced: %s", self.shard, seq, exc)


class ProjectionWatch:
    """The newest projected seq per shard, as announced; `wait` blocks until a shard reaches a seq."""

    def __init__(self, url: str, prefix: str, shards: list[int]) -> None:
        self.url, self.prefix, self.shards = url, prefix, shards
        self.seqs: dict[int, int] = {}
        self.live = False  # subscribed and read: waits are answered from here
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="projection-watch", daemon=True)

    def start(self) -> ProjectionWatch:
        self._thread.start()
        return self

    def wait(self, shard: int, seq: int, timeout: float) -> bool | None:
        """True once the shard's projection holds `seq`; False after `timeout`; None when the watch is
        not connected (ask the database instead)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.seqs.get(shard, 0) < seq:
                if not self.live:
                    return None
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    return self.seqs.get(shard, 0) >= seq
            return True

    def connected(self, timeout: float) -> bool:
        """Wait up to `timeout` for the watch to be subscribed and read; whether it is."""
        with self._cond:
            return self._cond.wait_for(lambda: self.live, timeout)

    def stop(self) -> None:
        self._stopping.set()  # the thread sees it within a second (its read's timeout)
        self._thread.join(2)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._follow()
            except (redis.RedisError, OSError, ValueError) as exc:
                if not self._stopping.is_set():
                    log.warning("projection watch: %s; polling the database meanwhile", exc)
            with self._cond:
                self.live = False
                self._cond.notify_all()
            self._stopping.wait(_RETRY)

    def _follow(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=2, health_check_interval=30)
        try:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(projected_channel(self.prefix))
            values = client.mget([projected_key(self.prefix, shard) for shard in self.shards])
            with self._cond:
                for shard, value in zip(self.shards, values, strict=True):
                    if value is not None:
                        self.seqs[shard] = max(self.seqs.get(shard, 0), int(value))
                self.live = True
                self._cond.notify_all()
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                shard_text, _, seq_text = message["data"].decode().partition(" ")
                shard, seq = int(shard_text), int(seq_text)
                with self._cond:
                    if seq > self.seqs.get(shard, 0):
                        self.seqs[shard] = seq
                        self._cond.notify_all()
        finally:
            client.close()
