"""What every benchmark here shares: its arguments, the header it prints, percentiles."""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from matching.engine import is_compiled

T = TypeVar("T")


def machine() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def parse_args(doc: str, commands: int, runs: int, **more: int) -> argparse.Namespace:
    """--commands, --runs, --seed, and one integer option per keyword in `more` (redis_commands=10_000:
    --redis-commands, 10,000 by default)."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--commands", type=int, default=commands)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--seed", type=int, default=7)
    for name, default in more.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=default)
    return parser.parse_args()


def print_header() -> None:
    """The command, the machine, the Python and whether the engine runs compiled."""
    print(f"command: python {' '.join(sys.argv)}")
    print(f"machine: {machine()}")
    print(f"python:  {platform.python_implementation()} {platform.python_version()}")
    print(f"engine:  {'compiled by mypyc' if is_compiled() else 'interpreted'} "
          f"(switch with scripts/build_engine.py build|clean)")


def deployed_settings() -> dict[str, str]:
    """What a deployment sets and the demo does not: DEBUG off (no per-query debug wrapper), so a
    benchmark measures the server as it would be run; a throwaway SECRET_KEY, which DEBUG off requires."""
    return {"DEBUG": "false", "SECRET_KEY": "bench-only-" + uuid.uuid4().hex}


def percentile(sorted_values: list[int], q: float) -> float:
    """The q-quantile of nanosecond samples, in microseconds."""
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1000


def gc_off(fn: Callable[..., T], *args: object) -> T:
    """`fn(*args)` with the garbage collector off (as the matcher process runs), collected first."""
    gc.collect()
    gc.disable()
    try:
        return fn(*args)
    finally:
        gc.enable()


def timer_overhead_ns() -> float:
    """What one perf_counter_ns reading costs: it is inside every latency figure."""
    clock = time.perf_counter_ns
    t0 = clock()
    for _ in range(100_000):
        clock()
    return (clock() - t0) / 100_000
