"""Latency histograms and throughput counters for the matcher and the web tier (no Django, no I/O).

    METRICS.stage("matcher.process").record(ns)          one value (integer nanoseconds, or a count)
    METRICS.stage("matcher.queue_wait").record_many(ns)  a batch's values in one call
    METRICS.throughput("matcher.commands").add(n)        n commands done now
    METRICS.summary()                                    percentiles in µs, rates per second

`Recorder` keeps a log-linear histogram, HdrHistogram's layout: values below 2^SUB_BITS (128) exactly,
larger ones in 2^(SUB_BITS - 1) = 64 buckets per power of two, so a percentile is known to within 1/64
(1.6%) of itself, whatever the range (up to 2^42 ns, 73 minutes; larger values count in the last
bucket). Recording is an index computation and a list increment: no lock, no allocation. Each thread
records into a stripe of its own (a `threading.local`), so concurrent writers never lose an update to
each other; reading sums the stripes. A reader racing a writer may see one value half-recorded (its
count but not yet its sum), which a summary shrugs off. A dying thread's stripe is folded into one
kept for retired threads, so short-lived threads do not pile up stripes.

`Throughput` counts events in 100 ms slots over the last 64 s of `time.monotonic` (never engine
time): rates over 1 s, 10 s and 60 s, and a total. It has one writer at a time (the matcher thread).
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

SUB_BITS = 7
SUB_COUNT = 1 << SUB_BITS  # values below this are their own bucket
HALF_BITS = SUB_BITS - 1
MAX_BITS = 42  # values from 2^42 on count in the last bucket
MAX_SHIFT = MAX_BITS - SUB_BITS
BUCKETS = (MAX_SHIFT + 2) << HALF_BITS
SUM = BUCKETS  # a stripe is [bucket counts..., sum of values, largest value]
MAX = BUCKETS + 1
STRIPE = BUCKETS + 2

QUANTILES = (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999))
WINDOWS = (1, 10, 60)  # seconds, for Throughput.rates


def bucket_of(value: int) -> int:
    """The histogram bucket that counts `value` (negative values count as 0)."""
    if value < SUB_COUNT:
        return value if value > 0 else 0
    shift = value.bit_length() - SUB_BITS
    if shift > MAX_SHIFT:
        return BUCKETS - 1
    return (shift << HALF_BITS) + (value >> shift)


def bucket_range(index: int) -> tuple[int, int]:
    """The smallest and largest value bucket `index` counts."""
    if index < SUB_COUNT:
        return index, index
    shift = (index >> HALF_BITS) - 1
    low = (index - (shift << HALF_BITS)) << shift
    return low, low + (1 << shift) - 1


class _Owner:
    """Kept in a thread's `threading.local`: when the thread ends it goes, and its stripe retires."""

    __slots__ = ("__weakref__", "stripe")

    def __init__(self, stripe: list[int]) -> None:
        self.stripe = stripe


class Histogram:
    """A recorder's counts at one moment: percentiles, mean, largest value."""

    def __init__(self, counts: list[int], total: int, largest: int) -> None:
        self.counts = counts
        self.count = sum(counts)
        self.total = total
        self.max = largest

    def percentiles(self, quantiles: Sequence[float]) -> list[int]:
        """The value at each quantile (ascending), as the largest value of the bucket holding the
        ceil(q * count)-th smallest value, never above the largest value recorded; 0 when empty."""
        if not self.count:
            return [0] * len(quantiles)
        ranks = [max(1, math.ceil(q * self.count)) for q in quantiles]
        out: list[int] = []
        seen = 0
        for index, n in enumerate(self.counts):
            if not n:
                continue
            seen += n
            while len(out) < len(ranks) and seen >= ranks[len(out)]:
                out.append(min(bucket_range(index)[1], self.max))
            if len(out) == len(ranks):
                break
        return out

    def percentile(self, q: float) -> int:
        return self.percentiles([q])[0]

    def summary(self, scale: float = 1.0, digits: int = 1) -> dict[str, Any]:
        """count, mean, p50, p90, p99, p999 and max, each value divided by `scale` (1000: ns to µs)."""
        values = self.percentiles([q for _, q in QUANTILES])
        out: dict[str, Any] = {"count": self.count,
                               "mean": round(self.total / self.count / scale, digits) if self.count else 0.0}
        for (name, _), value in zip(QUANTILES, values, strict=True):
            out[name] = round(value / scale, digits)
        out["max"] = round(self.max / scale, digits)
        return out


class Recorder:
    """A latency (or size) histogram that any thread records into without a lock."""

    def __init__(self, name: str, unit: str = "ns") -> None:
        self.name = name
        self.unit = unit  # "ns": summaries in µs; anything else: summaries in that unit
        self._local = threading.local()
        self._lock = threading.Lock()  # stripes come and go under it; never taken to record
        self._stripes: list[list[int]] = []
        self._retired = [0] * STRIPE

    def _stripe(self) -> list[int]:
        stripe = [0] * STRIPE
        owner = _Owner(stripe)
        with self._lock:
            self._stripes.append(stripe)
        self._local.owner = owner
        weakref.finalize(owner, self._retire, stripe).atexit = False
        return stripe

    def _retire(self, stripe: list[int]) -> None:
        with self._lock:
            retired = self._retired
            for index in range(BUCKETS):
                retired[index] += stripe[index]
            retired[SUM] += stripe[SUM]
            retired[MAX] = max(retired[MAX], stripe[MAX])
            self._stripes = [s for s in self._stripes if s is not stripe]

    def record(self, value: int) -> None:
        try:
            stripe = self._local.owner.stripe
        except AttributeError:
            stripe = self._stripe()
        if value < SUB_COUNT:
            index = value if value > 0 else 0
        else:
            shift = value.bit_length() - SUB_BITS
            index = (shift << HALF_BITS) + (value >> shift) if shift <= MAX_SHIFT else BUCKETS - 1
        stripe[index] += 1
        stripe[SUM] += value
        if value > stripe[MAX]:
            stripe[MAX] = value

    def record_many(self, values: Iterable[int]) -> None:
        """Record every value in `values`: one stripe lookup for all of them."""
        try:
            stripe = self._local.owner.stripe
        except AttributeError:
            stripe = self._stripe()
        largest = stripe[MAX]
        total = 0
        for value in values:
            if value < SUB_COUNT:
                index = value if value > 0 else 0
            else:
                shift = value.bit_length() - SUB_BITS
                index = (shift << HALF_BITS) + (value >> shift) if shift <= MAX_SHIFT else BUCKETS - 1
            stripe[index] += 1
            total += value
            if value > largest:
                largest = value
        stripe[SUM] += total
        stripe[MAX] = largest

    def snapshot(self) -> Histogram:
        with self._lock:
            stripes = [self._retired, *self._stripes]
        counts: list[int] | None = None
        total = largest = 0
        for stripe in stripes:
            if not (stripe[0] or stripe[SUM] or stripe[MAX]):
                continue  # nothing recorded in it (any value would show in one of the three)
            if counts is None:
                counts = stripe[:BUCKETS]
            else:
                counts = [a + b for a, b in zip(counts, stripe[:BUCKETS], strict=True)]
            total += stripe[SUM]
            largest = max(largest, stripe[MAX])
        return Histogram(counts if counts is not None else [0] * BUCKETS, total, largest)

    def summary(self) -> dict[str, Any]:
        if self.unit == "ns":
            return {"unit": "us", **self.snapshot().summary(scale=1000.0)}
        return {"unit": self.unit, **self.snapshot().summary()}

    def reset(self) -> None:
        with self._lock:
            for stripe in [self._retired, *self._stripes]:
                stripe[:] = [0] * STRIPE


class Throughput:
    """Events per second over the last 1, 10 and 60 s, in 100 ms slots; one writer thread at a time."""

    SLOT_NS = 100_000_000
    SLOTS = 640  # 64 s: more than the longest window

    def __init__(self, name: str, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.name = name
        self.total = 0
        self._clock = clock
        self._counts = [0] * self.SLOTS
        self._ids = [-1] * self.SLOTS  # which slot (clock ns // SLOT_NS) each entry counts
        self._started = clock()

    def add(self, n: int = 1) -> None:
        slot = self._clock() // self.SLOT_NS
        i = slot % self.SLOTS
        if self._ids[i] == slot:
            self._counts[i] += n
        else:
            self._counts[i] = n
            self._ids[i] = slot
        self.total += n

    def rate(self, seconds: float) -> float:
        """Events per second over the last `seconds` (at most 63), or since the counter started."""
        now = self._clock()
        current = now // self.SLOT_NS
        slots = max(1, min(self.SLOTS - 1, round(seconds * 1e9 / self.SLOT_NS)))
        first = current - slots + 1
        counted = sum(n for n, slot in zip(self._counts, self._ids, strict=True) if first <= slot <= current)
        span = (now - max(first * self.SLOT_NS, self._started)) / 1e9
        return counted / span if span > 0 else 0.0

    def rates(self) -> dict[str, Any]:
        """{"last_1s", "last_10s", "last_60s": events per second, "total": events}"""
        out: dict[str, Any] = {f"last_{w}s": round(self.rate(w), 1) for w in WINDOWS}
        out["total"] = self.total
        return out

    def reset(self) -> None:
        self._counts = [0] * self.SLOTS
        self._ids = [-1] * self.SLOTS
        self.total = 0
        self._started = self._clock()


class Registry:
    """Named recorders and counters, created on first use; `METRICS` is the process's own."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._stages: dict[str, Recorder] = {}
        self._counters: dict[str, Throughput] = {}

    def stage(self, name: str, unit: str = "ns") -> Recorder:
        recorder = self._stages.get(name)
        if recorder is None:
            with self._lock:
                recorder = self._stages.setdefault(name, Recorder(name, unit))
        return recorder

    def throughput(self, name: str) -> Throughput:
        counter = self._counters.get(name)
        if counter is None:
            with self._lock:
                counter = self._counters.setdefault(name, Throughput(name))
        return counter

    def uptime(self) -> float:
        return time.monotonic() - self.started

    def summary(self, prefix: str = "") -> dict[str, Any]:
        """{"uptime_seconds", "stages": {name: summary}, "throughput": {name: rates}} for the names
        starting with `prefix`; stages with nothing recorded are left out."""
        stages = {name: recorder.summary() for name, recorder in sorted(self._stages.items())
                  if name.startswith(prefix)}
        return {
            "uptime_seconds": round(self.uptime(), 3),
            "stages": {name: value for name, value in stages.items() if value["count"]},
            "throughput": {name: counter.rates() for name, counter in sorted(self._counters.items())
                           if name.startswith(prefix)},
        }

    def reset(self) -> None:
        """Forget every value and count (tests); recorders and counters stay registered."""
        for recorder in list(self._stages.values()):
            recorder.reset()
        for counter in list(self._counters.values()):
            counter.reset()


METRICS = Registry()
