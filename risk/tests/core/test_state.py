"""State: through JSON and back, a restored risk engine continues exactly like the one that never
stopped; the same commands give the same events and hash in any process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from matching.engine import MatchingEngine
from risk.core import RiskEngine

from .flow import Flow, new_engines, random_ops, setup_commands

ROOT = Path(__file__).resolve().parents[3]


def recorded_run(seed: int, n: int):
    """The commands of a seeded flow and each one's events, from one uninterrupted run."""
    risk = new_engines()
    flow = Flow(risk)
    commands, events = [], []
    for cmd in setup_commands():
        commands.append(cmd)
        events.append(risk.apply(cmd))
    for op in random_ops(seed, n):
        cmd = flow.command(op)
        commands.append(cmd)
        events.append(risk.apply(cmd))
    return commands, events, risk


def through_json(risk: RiskEngine) -> RiskEngine:
    engine = MatchingEngine.from_state(json.loads(json.dumps(risk.engine.state())))
    return RiskEngine.from_state(json.loads(json.dumps(risk.state())), engine)


@pytest.mark.parametrize("seed", [1, 2])
def test_restored_from_json_continues_like_the_uninterrupted_run(seed):
    commands, events, final = recorded_run(seed, 1_500)
    risk = new_engines()
    restored_with: set[str] = set()
    for i, cmd in enumerate(commands):
        if i and i % 150 == 0:
            state = risk.state()
            restored_with.update(name for name, part in (("held", state["held"]), ("user limits",
                                 state["user_limits"])) if part)
            restored_with.update("halt" for s in state["symbols"] if s[5])
            restored_with.update("window" for s in state["symbols"] if s[8])
            before = risk.state_hash()
            risk = through_json(risk)
            assert risk.state() == json.loads(json.dumps(state))
            assert risk.state_hash() == before
        assert risk.apply(cmd) == events[i], i
    assert risk.state_hash() == final.state_hash()
    assert restored_with == {"held", "user limits", "halt", "window"}


def test_state_is_plain_json_values():
    *_, risk = recorded_run(3, 500)
    state = risk.state()
    assert json.loads(json.dumps(state)) == state  # lists, not tuples; str keys; no enums


def test_the_same_commands_hash_the_same_in_another_process():
    script = ("from risk.tests.core.test_state import recorded_run\n"
              "print(recorded_run(4, 800)[2].state_hash())\n")
    hashes = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True,
                                text=True, check=True)
        hashes.add(result.stdout.strip())
    hashes.add(recorded_run(4, 800)[2].state_hash())
    assert len(hashes) == 1


def before_balances(state: dict) -> dict:
    """The risk state as a build before the balance stage wrote it: the ledger held each account's cash
    and reserved ([default_cash, [owner, cash, reserved, positions], orders without a ticket])."""
    balances = state["balances"]
    cash = {owner: (c, r) for owner, c, r in balances["accounts"]}
    holdings = {owner: positions for owner, positions in state["ledger"][0]}
    accounts = [[owner, *cash[owner], holdings.get(owner, [])] for owner in sorted({*cash, *holdings})]
    old = {key: value for key, value in state.items() if key != "balances"}
    old["ledger"] = [balances["default_cash"], accounts, [v[:12] for v in state["ledger"][1]]]
    return old


@pytest.mark.parametrize("seed", [3, 4])
def test_a_state_from_before_the_balance_stage_continues_like_the_uninterrupted_run(seed):
    """Snapshots of format 1 (matching.worker.formats) hold the cash in the ledger: read, the cash
    moves to the balance stage and each reservation to a ticket, and the run goes on exactly."""
    commands, events, final = recorded_run(seed, 1_200)
    risk = new_engines()
    for i, cmd in enumerate(commands):
        if i == 600:
            engine = MatchingEngine.from_state(json.loads(json.dumps(risk.engine.state())))
            old = json.loads(json.dumps(before_balances(risk.state())))
            assert "balances" not in old and len(old["ledger"]) == 3
            risk = RiskEngine.from_state(old, engine)
            assert risk.balances.check() == []
        assert risk.apply(cmd) == events[i], i
    for owner in final.ledger.accounts:
        assert risk.account(owner) == final.account(owner)
