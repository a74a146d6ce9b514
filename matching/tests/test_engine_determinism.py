"""state_hash: equal for equal histories, sensitive to any change, stable across processes."""

import os
import subprocess
import sys
from hashlib import sha256
from pathlib import Path

from matching.engine import MatchingEngine, TimeInForce
from matching.tests.conftest import SELL, Harness, random_commands

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("T", "U", "VW")


def run(cmds, symbols=SYMBOLS):
    eng = MatchingEngine(symbols)
    events = [eng.apply(c) for c in cmds]
    return eng, events


def test_same_commands_same_hash_and_events():
    cmds = random_commands(7, 600, SYMBOLS)
    a, ev_a = run(cmds)
    b, ev_b = run(random_commands(7, 600, SYMBOLS))
    assert ev_a == ev_b
    assert a.state_hash() == b.state_hash()
    assert len(a.state_hash()) == 64
    int(a.state_hash(), 16)


def test_symbol_registration_order_does_not_matter():
    cmds = random_commands(3, 300, SYMBOLS)
    assert run(cmds, SYMBOLS)[0].state_hash() == run(cmds, tuple(reversed(SYMBOLS)))[0].state_hash()


def test_hash_changes_with_any_state_change(engine):
    h = Harness(engine)
    seen = {engine.state_hash()}
    steps = [
        lambda: h.buy(1, 5, 100),
        lambda: h.buy(2, 5, 100),
        lambda: h.amend(1, qty=4),  # same book shape except one qty
        lambda: h.stop(3, SELL, 1, stop_price=50),  # pending stop: not in depth
        lambda: h.buy(4, 1, 90, tif=TimeInForce.DAY, expire_at=10**9),
        lambda: h.sell(5, 1, 100, owner=2),  # a trade: last price and trade counter
        lambda: h.cancel(2),
        lambda: h.amend(3, stop_price=40),
    ]
    for step in steps:
        step()
        digest = engine.state_hash()
        assert digest not in seen
        seen.add(digest)


def test_one_more_order_changes_hash():
    cmds = random_commands(11, 300, SYMBOLS)
    a, _ = run(cmds)
    b, _ = run(cmds)
    Harness(b, "T").buy(10**6, 1, 1, ts=10**9)
    assert a.state_hash() != b.state_hash()


def test_priority_order_is_part_of_the_state():
    a, b = MatchingEngine(["T"]), MatchingEngine(["T"])
    ha, hb = Harness(a), Harness(b)
    ha.buy(1, 1, 100, ts=1)
    ha.buy(2, 1, 100, ts=1)
    hb.buy(2, 1, 100, ts=1)
    hb.buy(1, 1, 100, ts=1)
    assert a.books["T"].depth() == b.books["T"].depth()
    assert a.state_hash() != b.state_hash()


SCRIPT = """
from hashlib import sha256
from matching.engine import MatchingEngine
from matching.tests.conftest import random_commands
eng = MatchingEngine({symbols!r})
events = [eng.apply(cmd) for cmd in random_commands(5, 800, {symbols!r})]
print(eng.state_hash(), sha256(repr(events).encode()).hexdigest())
"""


def test_hash_equal_across_processes_and_hash_seeds():
    script = SCRIPT.format(symbols=SYMBOLS)
    digests = set()
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                             text=True, check=True, timeout=120)
        digests.add(out.stdout.strip())
    local, events = run(random_commands(5, 800, SYMBOLS))
    assert digests == {f"{local.state_hash()} {sha256(repr(events).encode()).hexdigest()}"}



def test_book_hash_depends_only_on_that_book():
    a, _ = run(random_commands(5, 400, SYMBOLS))
    b, _ = run(random_commands(5, 400, SYMBOLS))
    assert a.books["T"].state_hash() == b.books["T"].state_hash()
    Harness(b, "U").buy(10**6, 1, 1, ts=10**9)
    assert a.books["T"].state_hash() == b.books["T"].state_hash()
    assert a.books["U"].state_hash() != b.books["U"].state_hash()
