"""What recording a latency costs: `Recorder.record` one value at a time and `record_many` in bulk.

    python bench/metrics_bench.py [--commands 200000] [--runs 5]

The matcher thread records per batch and the web tier per request, so this is added to every one of
them; it must stay far below the microsecond a command costs to match.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import gc_off, parse_args, print_header
from matching.worker.metrics import Recorder


def per_value_ns(values: list[int], bulk: bool) -> float:
    recorder = Recorder("bench")
    started = time.perf_counter_ns()
    if bulk:
        recorder.record_many(values)
    else:
        record = recorder.record
        for value in values:
            record(value)
    return (time.perf_counter_ns() - started) / len(values)


def main() -> int:
    args = parse_args(__doc__, commands=200_000, runs=5)
    print_header()
    values = [1_000 + (n * 7919) % 2_000_000 for n in range(args.commands)]  # ns, spread over buckets
    one = [gc_off(per_value_ns, values, False) for _ in range(args.runs)]
    bulk = [gc_off(per_value_ns, values, True) for _ in range(args.runs)]
    print(f"\n{args.commands} values, medians of {args.runs} runs (ns a value):")
    print(f"  record, one at a time  {statistics.median(one):7.1f}")
    print(f"  record_many            {statistics.median(bulk):7.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
