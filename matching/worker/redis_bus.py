"""The web side of the production transport: a `CommandBus` over one Redis Stream per shard.

`submit` XADDs `{v: format, c: encoded command, r: reply key}` to the command's shard stream (the durable log,
see `stream_runner`) and BLPOPs its own reply key until the timeout. Every failure is `Unavailable`,
raised fast: a shard whose heartbeat is missing (its runner is down) or whose queue lag is over
`max_lag` is refused before anything is written; an unreachable Redis fails the call at once (no
client-side retries, which could append a command twice); a reply that does not come in time fails at
the deadline. The command may still be applied after a timeout: retrying with the same
client_order_id is safe.

A present heartbeat is trusted for `check_every` seconds per shard and process, so the check costs
one GET per half second, not one per command; a missing one is read again on every call (a restarted
runner is used at once), and a timeout or connection error forgets the cached heartbeat.

`submit_many` sends several commands in one pipeline of XADDs (in order within each shard) and
collects their replies on one connection. Callers' acknowledgement times go to the metrics registry
(`bus.ack_sync`, `bus.ack_async`, as in the embedded bus); `heartbeats()` returns what each shard's
runner last published, its metrics summary included.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import redis
import redis.asyncio as aredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from matching.engine import AdvanceTime
from matching.worker.bus import Unavailable
from matching.worker.codec import WorkerCommand, encode_command
from matching.worker.matcher import ORDER_ID_STRIDE, Reply
from matching.worker.metrics import METRICS, Registry
from matching.worker.replies import decode_reply
from matching.worker.stream_runner import entry_fields, heartbeat_key, stream_key
from risk.core import AdjustCash, RejectHeld, ReleaseHeld, SetDefaultCash, SetInstrumentRisk, SetUserLimit

DOWN_RETRY_AFTER = 5.0
BUSY_RETRY_AFTER = 1.0


def symbol_shards(shards: Mapping[int | str, Iterable[str]]) -> dict[str, int]:
    """{shard: [symbols]} (the MATCHER_SHARDS setting) -> {symbol: shard}; a symbol on two shards is
    an error."""
    out: dict[str, int] = {}
    for shard, symbols in shards.items():
        for symbol in symbols:
            if symbol in out and out[symbol] != int(shard):
                raise ValueError(f"{symbol} is assigned to shards {out[symbol]} and {shard}")
            out[symbol] = int(shard)
    return out


class RedisBus:
    def __init__(
        self,
        redis_url: str,
        shard_of: Callable[[str], int] | Mapping[str, int],
        timeout: float = 5.0,
        *,
        shards: Iterable[int] | None = None,
        default_shard: int = 0,
        prefix: str = "exchange",
        max_lag: int = 10_000,
        max_in_flight: int = 256,
        check_every: float = 0.5,
        metrics: Registry = METRICS,
    ) -> None:
        """`shard_of` maps a symbol to its shard (a callable, or a dict; unknown symbols go to
        `default_shard`, whose matcher rejects them). `timeout` is the default and the longest wait
        for a reply; every Redis call is bounded by it plus a second. Each waiting caller holds one
        Redis connection (its BLPOP): beyond `max_in_flight` callers per bus, `Unavailable` at once."""
        if callable(shard_of):
            self._shard_of = shard_of
            self.shards = sorted(set(shards if shards is not None else [default_shard]))
        else:
            mapping = dict(shard_of)
            self._shard_of = lambda symbol: mapping.get(symbol, default_shard)
            self.shards = sorted(set(shards if shards is not None else [*mapping.values(), default_shard]))
        self.redis_url = redis_url
        self.timeout = timeout
        self.default_shard = default_shard
        self.prefix = prefix
        self.max_lag = max_lag
        self.max_in_flight = max_in_flight
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self.check_every = check_every
        self._client_options: dict[str, Any] = {
            "socket_timeout": timeout + 1.0,
            "socket_connect_timeout": min(timeout, 1.0),
            "decode_responses": False,
            "max_connections": max_in_flight + 16,  # + health checks
        }
        self._redis = redis.Redis.from_url(redis_url, retry=Retry(NoBackoff(), 0), **self._client_options)
        # redis.asyncio connections belong to the event loop that opened them: one client per loop
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aredis.Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._token = uuid.uuid4().hex
        self._counter = itertools.count(1)
        self._heartbeats: dict[int, tuple[float, dict | None]] = {}  # shard -> (read at, heartbeat)
        self._ack_sync = metrics.stage("bus.ack_sync")
        self._ack_async = metrics.stage("bus.ack_async")

    @classmethod
    def from_settings(cls) -> RedisBus:
        """Built from Django settings: REDIS_URL, MATCHER_SHARDS, MATCHER_TIMEOUT, MATCHER_STREAM_PREFIX,
        MATCHER_MAX_LAG."""
        from django.conf import settings

        shards = symbol_shards(settings.MATCHER_SHARDS)
        return cls(
            getattr(settings, "REDIS_URL", None) or settings.ENV.redis_url,
            shards,
            getattr(settings, "MATCHER_TIMEOUT", 5.0),
            shards=[int(s) for s in settings.MATCHER_SHARDS],
            default_shard=min((int(s) for s in settings.MATCHER_SHARDS), default=0),
            prefix=getattr(settings, "MATCHER_STREAM_PREFIX", "exchange"),
            max_lag=getattr(settings, "MATCHER_MAX_LAG", 10_000),
            max_in_flight=getattr(settings, "MATCHER_MAX_IN_FLIGHT", 256),
        )

    def close(self) -> None:
        self._redis.close()

    async def aclose(self) -> None:
        client = self._async.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    # ---- CommandBus -------------------------------------------------------------------------

    def shard_for(self, cmd: WorkerCommand, shard: int | None = None) -> int:
        """The shard that owns the command's symbol (a held order's: the shard in its order id)."""
        if shard is not None:
            return shard
        if isinstance(cmd, ReleaseHeld | RejectHeld):
            return cmd.order_id // ORDER_ID_STRIDE
        if isinstance(cmd, SetInstrumentRisk):
            return self._shard_of(cmd.config.symbol)
        if isinstance(cmd, SetUserLimit):
            return self._shard_of(cmd.limit.symbol)
        if isinstance(cmd, AdjustCash):
            return self.default_shard  # deposits and withdrawals: the default shard's balance (RISK.md)
        if isinstance(cmd, AdvanceTime | SetDefaultCash):
            raise ValueError(f"{type(cmd).__name__} has no symbol: pass shard=")
        return self._shard_of(cmd.symbol)

    def submit(self, cmd: WorkerCommand, timeout: float | None = None, *, shard: int | None = None) -> Reply:
        started = time.perf_counter_ns()
        shard = self.shard_for(cmd, shard)
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        payload = encode_command(cmd)
        client = self._redis
        self._enter()
        try:
            beat: dict | bool | None = self._recent(shard)
            if beat is False:
                beat = self._remember(shard, client.get(heartbeat_key(self.prefix, shard)))
            self._check(shard, beat, self.max_lag)
            key = self._reply_key()
            client.xadd(stream_key(self.prefix, shard), entry_fields(payload, key))
            remaining = deadline - time.monotonic()
            got = client.blpop([key], timeout=remaining) if remaining >= 0.01 else None
        except redis.RedisError as exc:
            self._heartbeats.pop(shard, None)
            raise Unavailable(f"the command stream is unreachable: {exc}", DOWN_RETRY_AFTER) from None
        finally:
            self._leave()
        reply = self._answer(shard, got, wait)
        self._ack_sync.record(time.perf_counter_ns() - started)
        return reply

    def submit_many(self, cmds: Sequence[WorkerCommand], timeout: float | None = None
                    ) -> list[Reply | Unavailable]:
        """Send every command in one pipeline of XADDs, then wait for all their replies until one
        deadline, on one connection; per command its Reply or `Unavailable` (a shard down or
        overloaded refuses its own commands only). As with `submit`, a command that timed out, or was
        sent when Redis failed, may still be applied."""
        started = time.perf_counter_ns()
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        results: list[Reply | Unavailable | None] = [None] * len(cmds)
        pending: dict[bytes, tuple[int, int]] = {}  # reply key -> (index, shard)
        client = self._redis
        acks: list[int] = []
        self._enter()
        try:
            pipe = client.pipeline(transaction=False)
            for index, cmd in enumerate(cmds):
                shard = self.shard_for(cmd)
                beat: dict | bool | None = self._recent(shard)
                if beat is False:
                    beat = self._remember(shard, client.get(heartbeat_key(self.prefix, shard)))
                try:
                    self._check(shard, beat, self.max_lag)
                except Unavailable as exc:
                    results[index] = exc
                    continue
                key = self._reply_key()
                pipe.xadd(stream_key(self.prefix, shard), entry_fields(encode_command(cmd), key))
                pending[key.encode()] = (index, shard)
            if pending:
                pipe.execute()
            while pending:
                remaining = deadline - time.monotonic()
                got = client.blpop(list(pending), timeout=remaining) if remaining >= 0.01 else None
                if got is None:
                    break
                results[pending.pop(got[0])[0]] = decode_reply(got[1])
                acks.append(time.perf_counter_ns() - started)
                if pending:  # a runner answers its batch at once: take what is there in one round trip
                    keys = list(pending)
                    pipe = client.pipeline(transaction=False)
                    for key in keys:
                        pipe.lpop(key)
                    for key, raw in zip(keys, pipe.execute(), strict=True):
                        if raw is not None:
                            results[pending.pop(key)[0]] = decode_reply(raw)
                            acks.append(time.perf_counter_ns() - started)
        except redis.RedisError as exc:
            for _, shard in pending.values():
                self._heartbeats.pop(shard, None)
            failure = Unavailable(f"the command stream is unreachable: {exc}", DOWN_RETRY_AFTER)
            results = [failure if result is None else result for result in results]
        finally:
            self._leave()
        for _, shard in pending.values():
            self._heartbeats.pop(shard, None)  # look at the heartbeat again on the next call
        self._ack_sync.record_many(acks)
        late = Unavailable(f"the matcher did not answer within {wait:g}s", BUSY_RETRY_AFTER)
        return [late if result is None else result for result in results]

    async def submit_async(
        self, cmd: WorkerCommand, timeout: float | None = None, *, shard: int | None = None
    ) -> Reply:
        started = time.perf_counter_ns()
        shard = self.shard_for(cmd, shard)
        wait = self._wait(timeout)
        deadline = time.monotonic() + wait
        payload = encode_command(cmd)
        client = self._async_client()
        self._enter()
        try:
            beat: dict | bool | None = self._recent(shard)
            if beat is False:
                beat = self._remember(shard, await client.get(heartbeat_key(self.prefix, shard)))
            self._check(shard, beat, self.max_lag)
            key = self._reply_key()
            await client.xadd(stream_key(self.prefix, shard), entry_fields(payload, key))
            remaining = deadline - time.monotonic()
            got = await client.blpop([key], timeout=remaining) if remaining >= 0.01 else None
        except redis.RedisError as exc:
            self._heartbeats.pop(shard, None)
            raise Unavailable(f"the command stream is unreachable: {exc}", DOWN_RETRY_AFTER) from None
        finally:
            self._leave()
        reply = self._answer(shard, got, wait)
        self._ack_async.record(time.perf_counter_ns() - started)
        return reply

    def heartbeats(self) -> dict[int, dict | None]:
        """Each shard's heartbeat as its runner last published it (None: down); raises redis.RedisError."""
        keys = [heartbeat_key(self.prefix, shard) for shard in self.shards]
        raws = self._redis.mget(keys) if keys else []
        return {shard: self._remember(shard, raw) for shard, raw in zip(self.shards, raws, strict=True)}

    def health(self) -> dict:
        """Per shard: its runner's heartbeat (seq, queue depth, age) or down; overall ok only if all are."""
        try:
            beats = self.heartbeats()
        except redis.RedisError as exc:
            return {"status": "down", "mode": "redis", "error": f"Redis unreachable: {exc}",
                    "shards": {str(shard): {"status": "unknown"} for shard in self.shards}}
        shards: dict[str, dict] = {}
        for shard, beat in beats.items():
            if beat is None:
                shards[str(shard)] = {"status": "down"}
                continue
            lag = int(beat.get("lag", 0))
            shards[str(shard)] = {
                "status": "ok" if lag <= self.max_lag else "overloaded",
                "seq": beat.get("seq"),
                "queue_depth": lag,
                "age": round(max(0.0, time.time() - float(beat.get("time", time.time()))), 3),
            }
        healthy = all(s["status"] == "ok" for s in shards.values())
        return {
            "status": "ok" if healthy else "down",
            "mode": "redis",
            "queue_depth": sum(s.get("queue_depth", 0) for s in shards.values()),
            "shards": shards,
        }

    # ---- internals --------------------------------------------------------------------------

    def _wait(self, timeout: float | None) -> float:
        return self.timeout if timeout is None else min(timeout, self.timeout)

    def _enter(self) -> None:
        with self._in_flight_lock:
            if self._in_flight >= self.max_in_flight:
                raise Unavailable(f"{self._in_flight} commands already in flight", BUSY_RETRY_AFTER)
            self._in_flight += 1

    def _leave(self) -> None:
        with self._in_flight_lock:
            self._in_flight -= 1

    def _reply_key(self) -> str:
        return f"{self.prefix}:reply:{self._token}:{next(self._counter)}"

    def _async_client(self) -> aredis.Redis:
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            client = aredis.Redis.from_url(self.redis_url, retry=aredis.retry.Retry(NoBackoff(), 0),
                                           **self._client_options)
            self._async[loop] = client
        return client

    def _recent(self, shard: int) -> dict | bool:
        """The shard's heartbeat if it was present less than `check_every` ago, else False: read it
        again (a missing one is read every time, so a restarted runner is seen at once)."""
        entry = self._heartbeats.get(shard)
        if entry is None or entry[1] is None or time.monotonic() - entry[0] > self.check_every:
            return False
        return entry[1]

    def _remember(self, shard: int, raw: bytes | str | None) -> dict | None:
        beat = None
        if raw is not None:
            try:
                beat = json.loads(raw)
            except ValueError:
                beat = {}
        self._heartbeats[shard] = (time.monotonic(), beat)
        return beat

    @staticmethod
    def _check(shard: int, beat: dict | bool | None, max_lag: int) -> None:
        if not isinstance(beat, dict):
            raise Unavailable(f"matcher shard {shard} is down (no heartbeat)", DOWN_RETRY_AFTER)
        if int(beat.get("lag", 0)) > max_lag:
            raise Unavailable(f"matcher shard {shard} is overloaded (queue full)", BUSY_RETRY_AFTER)

    def _answer(self, shard: int, got: tuple | list | None, wait: float) -> Reply:
        if got is None:
            self._heartbeats.pop(shard, None)  # look at the heartbeat again on the next call
            raise Unavailable(f"matcher shard {shard} did not answer within {wait:g}s", BUSY_RETRY_AFTER)
        return decode_reply(got[1])
