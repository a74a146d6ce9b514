"""The garbage collector of the long-running processes (the web server, the shard runners).

Python's defaults (a young collection every 700 allocations, a full one whenever the objects that
survived young collections grow by a quarter of the old heap) suit short scripts. In a server they
promote every object that lives a few milliseconds (a frame queued for a socket, a request in flight) to
the old generation, so full collections come every few seconds, and each walks the whole heap holding the
GIL: measured on the embedded server with 1,000 WebSocket subscribers, 100-250 ms a time, which was the
99th percentile of the fan-out's latency (docs/PERFORMANCE.md). So once the process has started:
- what exists then (modules, settings, the recovered books) is frozen out of collections (`gc.freeze`):
  it lives as long as the process, and full collections no longer walk it;
- young collections run every `young_threshold` allocations, so short-lived objects are freed by their
  reference counts before a collection can promote them.
Cycles are still collected: the collector stays on.
"""

from __future__ import annotations

import gc
from typing import Any


def settle_heap(young_threshold: int) -> None:
    """Freeze what the process allocated while starting and set the young threshold (0: leave Python's
    defaults, nothing frozen)."""
    if young_threshold <= 0:
        return
    gc.collect()  # what startup left as garbage is not frozen with the rest
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)


def gc_figures() -> dict[str, Any]:
    """This process's collector: its thresholds, the objects frozen, and per generation the collections
    so far and the objects they freed (GET /api/performance/system, /metrics)."""
    return {"thresholds": list(gc.get_threshold()), "frozen_objects": gc.get_freeze_count(),
            "generations": [{"collections": g["collections"], "collected": g["collected"]}
                            for g in gc.get_stats()]}
