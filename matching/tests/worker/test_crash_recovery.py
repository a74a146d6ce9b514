"""kill -9 a matcher process under load, restart it, again and again: nothing acknowledged is lost.

CRASH_CYCLES (default 4) sets the number of kills; the nightly run uses 20 or more.
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from matching.tests.worker.load import SYMBOLS
from matching.worker.journal import Segments
from matching.worker.matcher import Matcher

ROOT = Path(__file__).resolve().parents[3]
CYCLES = int(os.environ.get("CRASH_CYCLES", "4"))


def run_until_killed(directory: Path, seed: int, lifetime: float) -> tuple[int, int]:
    """Start the driver, kill -9 it after `lifetime` seconds; (seq it recovered to, last ack seen)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "matching.tests.worker.crash_driver", str(directory), str(seed)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    output = proc.stdout
    reader = threading.Thread(target=lambda: lines.extend(output), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    while not lines and time.monotonic() < deadline:  # wait until it has recovered
        time.sleep(0.01)
    time.sleep(lifetime)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(5)
    recovered = int(lines[0].split()[1])
    acks = [int(line.split()[1]) for line in lines[1:] if line.startswith("ack ")]
    return recovered, max(acks, default=recovered)


def test_kill_9_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(2024)
    acknowledged = 0
    for cycle in range(CYCLES):
        recovered, last_ack = run_until_killed(tmp_path, seed=cycle, lifetime=rng.uniform(0.3, 1.2))
        assert recovered >= acknowledged, f"cycle {cycle}: recovered to {recovered}, acked {acknowledged}"
        assert last_ack > recovered, f"cycle {cycle}: the driver made no progress"
        acknowledged = last_ack

    records = list(Segments(tmp_path / "shard-0.journal").read())
    assert len(Segments(tmp_path / "shard-0.journal").retired()) > 1, "the run should have rotated"
    assert records[0].seq == 1
    assert all(later.seq == earlier.last_seq + 1 for earlier, later in itertools.pairwise(records))
    assert records[-1].last_seq >= acknowledged

    full_replay = Matcher(SYMBOLS)
    for record in records:
        full_replay.apply_record(record)
    reopened = Matcher.open(SYMBOLS, tmp_path)  # latest snapshot + the journal's tail
    try:
        assert any(tmp_path.glob("shard-0-snapshots/snapshot-*.json")), "the run should have snapshotted"
        assert reopened.seq == full_replay.seq == records[-1].last_seq
        assert reopened.state_hash() == full_replay.state_hash()
        assert reopened.client_order_ids == full_replay.client_order_ids
    finally:
        reopened.close()
