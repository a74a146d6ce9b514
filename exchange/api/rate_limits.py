"""Rate limits: take tokens from named budgets, atomically, shared by every server process.

A budget is a sliding window: at most `count` tokens in any `period` seconds. It keeps the times of
the tokens taken (a sliding log), so the limit holds exactly over any window, not only on average,
and the wait it answers is the time until its oldest token leaves the window.

Two backends with one contract, chosen by the settings like the matcher's bus:
- `RedisLimiter` (production, on REDIS_CACHE_URL): one Lua script per call, so the check and the take are one
  atomic step in Redis for every process and thread; the time is Redis' own (`TIME`), keys carry a
  prefix ("<MATCHER_STREAM_PREFIX>:ratelimit") and expire with their window.
  An unreachable Redis raises `Unavailable`, which the API answers 503 with Retry-After.
- `LocalLimiter` (the embedded default, one process): the same rules in memory under a lock.

A refused take takes nothing: a client hammering a closed budget does not push its own reopening back.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from redis.backoff import NoBackoff
from redis.retry import Retry

from exchange.env import Mode
from matching.worker.bus import Unavailable

_RATE = re.compile(r"^(\d+)/(\d*)(s|sec|m|min|h|hour|d|day)$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True, slots=True)
class Rate:
    count: int  # tokens...
    period: float  # ...in any window of this many seconds


@functools.lru_cache(maxsize=64)
def parse_rate(text: str) -> Rate:
    """`10/s`, `1000/min`, `5/h`, `1/day`, or with a number of periods: `10/5min` (10 in 5 minutes)."""
    match = _RATE.match(text.strip())
    if match is None or int(match[1]) < 1 or match[2] == "0":
        raise ValueError(f"a rate is N/period (s, min, h or day, e.g. 10/s or 10/5min), not {text!r}")
    return Rate(int(match[1]), int(match[2] or 1) * _SECONDS[match[3][0]])


@dataclass(frozen=True, slots=True)
class Take:
    """`cost` tokens from the budget `key` limited to `rate`; a cost of 0 takes nothing but still
    needs one token left (a check that some budget remains)."""

    key: str
    rate: Rate
    cost: int = 1


class LocalLimiter:
    """The budgets of this process, in memory (the embedded default)."""

    SWEEP_EVERY = 4096  # calls between sweeps of budgets whose window has emptied

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.lock = threading.Lock()
        self.logs: dict[str, tuple[float, deque[float]]] = {}  # key -> (period, times taken, oldest first)
        self.calls = 0

    def take_all(self, takes: Sequence[Take]) -> float:
        """All or nothing: 0.0 when every budget had room for its cost (now taken), else the seconds until
        they all would have, and nothing is taken."""
        with self.lock:
            now = self._tick()
            logs = [self._log(take, now) for take in takes]
            wait = max((_wait(take, log, now) for take, log in zip(takes, logs, strict=True)), default=0.0)
            if wait == 0.0:
                for take, log in zip(takes, logs, strict=True):
                    log.extend([now] * take.cost)
            return wait

    def take_up_to(self, take: Take) -> tuple[int, float]:
        """As many of `take.cost` tokens as are left: (granted, seconds until the next token frees up if
        none is left now, else 0.0)."""
        with self.lock:
            now = self._tick()
            log = self._log(take, now)
            granted = max(0, min(take.cost, take.rate.count - len(log)))
            log.extend([now] * granted)
            wait = log[0] + take.rate.period - now if len(log) >= take.rate.count else 0.0
            return granted, wait

    def give_back(self, takes: Sequence[Take]) -> None:
        """One token back to each budget (its newest)."""
        with self.lock:
            for take in takes:
                entry = self.logs.get(take.key)
                if entry is not None and entry[1]:
                    entry[1].pop()

    def _tick(self) -> float:
        now = self.clock()
        self.calls += 1
        if self.calls % self.SWEEP_EVERY == 0:
            self.logs = {key: (period, log) for key, (period, log) in self.logs.items()
                         if log and log[-1] > now - period}
        return now

    def _log(self, take: Take, now: float) -> deque[float]:
        """The budget's token times still in the window."""
        entry = self.logs.get(take.key)
        if entry is None:
            entry = self.logs[take.key] = (take.rate.period, deque())
        log = entry[1]
        while log and log[0] <= now - take.rate.period:
            log.popleft()
        return log


def _wait(take: Take, log: deque[float], now: float) -> float:
    """Seconds until `log` has room for `take` (0.0: now)."""
    over = len(log) + max(take.cost, 1) - take.rate.count
    if over <= 0:
        return 0.0
    if over > len(log):  # more than the whole budget: never; say one window
        return take.rate.period
    return log[over - 1] + take.rate.period - now


# Both scripts: the time (Redis' own, µs), and the taking of `cost` tokens (members: ids from a counter
# key, score: the time), the log expiring with its window.
_COMMON = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function add_tokens(log, counter, cost, period)
  local last = redis.call('INCRBY', counter, cost)
  local entries = {}
  for id = last - cost + 1, last do
    entries[#entries+1] = now
    entries[#entries+1] = id
  end
  redis.call('ZADD', log, unpack(entries))
  redis.call('PEXPIRE', log, math.ceil(period / 1000) + 1)
end
"""

# KEYS: the budgets' logs (sorted sets: member an id, score the time in µs), then the id counter.
# ARGV: per budget its count, period in µs and cost. Returns 0 (all taken) or the wait in µs.
_TAKE_ALL = _COMMON + """
local n = #KEYS - 1
local wait = 0
for i = 1, n do
  local count, period, cost = tonumber(ARGV[3*i-2]), tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - period)
  local used = redis.call('ZCARD', KEYS[i])
  local over = used + math.max(cost, 1) - count
  if over > used then
    wait = math.max(wait, period)
  elseif over > 0 then
    local oldest = redis.call('ZRANGE', KEYS[i], over - 1, over - 1, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + period - now)
  end
end
if wait > 0 then
  return math.max(1, math.ceil(wait))
end
for i = 1, n do
  local period, cost = tonumber(ARGV[3*i-1]), tonumber(ARGV[3*i])
  if cost > 0 then
    add_tokens(KEYS[i], KEYS[n+1], cost, period)
  end
end
return 0
"""

# KEYS: the budget's log, the id counter. ARGV: count, period in µs, cost.
# Returns {granted, wait in µs until the next token frees up if none is left now, else 0}.
_TAKE_UP_TO = _COMMON + """
local count, period, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
local granted = math.max(0, math.min(cost, count - used))
if granted > 0 then
  add_tokens(KEYS[1], KEYS[2], granted, period)
end
local wait = 0
if used + granted >= count then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  wait = math.max(1, math.ceil(tonumber(oldest[2]) + period - now))
end
return {granted, wait}
"""


class RedisLimiter:
    """The budgets in Redis, shared by every server process (production)."""

    def __init__(self, url: str, prefix: str, timeout: float = 1.0) -> None:
        self.prefix = prefix
        self.client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                           retry=Retry(NoBackoff(), 1))
        self.take_all_script = self.client.register_script(_TAKE_ALL)
        self.take_up_to_script = self.client.register_script(_TAKE_UP_TO)

    def take_all(self, takes: Sequence[Take]) -> float:
        if not takes:
            return 0.0
        args: list[int] = []
        for take in takes:
            args += [take.rate.count, round(take.rate.period * 1_000_000), take.cost]
        keys = [self.key(take.key) for take in takes] + [self.key("ids")]
        with unavailable_on_redis_errors():
            wait = self.take_all_script(keys=keys, args=args)
        return int(wait) / 1_000_000

    def take_up_to(self, take: Take) -> tuple[int, float]:
        args = [take.rate.count, round(take.rate.period * 1_000_000), take.cost]
        with unavailable_on_redis_errors():
            granted, wait = self.take_up_to_script(keys=[self.key(take.key), self.key("ids")], args=args)
        return int(granted), int(wait) / 1_000_000

    def give_back(self, takes: Sequence[Take]) -> None:
        """One token back to each budget (its newest), in one round trip."""
        with unavailable_on_redis_errors():
            pipe = self.client.pipeline(transaction=True)
            for take in takes:
                pipe.zpopmax(self.key(take.key))
            pipe.execute()

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def unavailable_on_redis_errors() -> Iterator[None]:
    """Redis errors as `Unavailable` (503 with Retry-After), never a 500. The message names no URL."""
    try:
        yield
    except redis.RedisError as exc:
        raise Unavailable(f"the rate limiter is unavailable ({type(exc).__name__})", 1.0) from exc


Limiter = LocalLimiter | RedisLimiter

_lock = threading.Lock()
_limiter: Limiter | None = None


def limiter() -> Limiter:
    """This process's limiter, built from the settings on first use."""
    global _limiter
    if _limiter is None:
        with _lock:
            if _limiter is None:
                if settings.EXCHANGE_MODE == Mode.PRODUCTION:  # what may be lost: the cache's Redis
                    prefix = f"{settings.MATCHER_STREAM_PREFIX}:ratelimit"
                    url = settings.REDIS_CACHE_URL or settings.REDIS_URL
                    assert url is not None  # production mode has one (exchange/env.py refuses it without)
                    _limiter = RedisLimiter(url, prefix)
                else:
                    _limiter = LocalLimiter()
    return _limiter


def reset() -> None:
    """Forget this process's limiter (and, embedded, every budget): the next use builds it afresh."""
    global _limiter
    with _lock:
        if isinstance(_limiter, RedisLimiter):
            _limiter.close()
        _limiter = None


@receiver(setting_changed)
def _settings_changed(setting: str, **kwargs: object) -> None:
    if setting in {"EXCHANGE_MODE", "REDIS_URL", "REDIS_CACHE_URL", "MATCHER_STREAM_PREFIX"}:
        reset()
