"""exchange/gc_tuning.py: the collector of a started server process. Each case runs in a fresh
interpreter: freezing and thresholds are process-wide, and this one is pytest's."""

from __future__ import annotations

import json
import subprocess
import sys

from exchange.tests.live_server import ROOT

PROBE = """
import gc, json, sys
from exchange.gc_tuning import gc_figures, settle_heap
before = gc.get_threshold()
garbage = []
garbage.append(garbage)  # a cycle made while starting: collected, not frozen
del garbage
settle_heap(int(sys.argv[1]))
print(json.dumps({"before": before, "after": gc_figures()}))
"""


def probe(young_threshold: int) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, str(young_threshold)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def test_settle_heap_freezes_startup_and_raises_the_young_threshold() -> None:
    out = probe(12345)
    assert out["after"]["thresholds"] == [12345, *out["before"][1:]]
    assert out["after"]["frozen_objects"] > 1000  # the modules, classes and functions loaded so far
    assert out["after"]["generations"][2]["collections"] >= 1  # the full collection before freezing
    assert out["after"]["generations"][2]["collected"] >= 1  # the cycle


def test_zero_leaves_python_s_defaults() -> None:
    out = probe(0)
    assert out["after"]["thresholds"] == out["before"]
    assert out["after"]["frozen_objects"] == 0
