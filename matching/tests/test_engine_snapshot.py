"""from_state(state()) rebuilds an engine that hashes the same and behaves the same afterwards."""

import json

import pytest

from matching.engine import MatchingEngine
from matching.tests.conftest import random_commands

SYMBOLS = ("T", "U")


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("cut", [0, 150, 700])
def test_restored_engine_continues_identically(seed, cut):
    cmds = random_commands(seed, 1200, SYMBOLS)
    original = MatchingEngine(SYMBOLS)
    for cmd in cmds[:cut]:
        original.apply(cmd)
    restored = MatchingEngine.from_state(json.loads(json.dumps(original.state())))
    assert restored.state_hash() == original.state_hash()
    for cmd in cmds[cut:]:
        assert restored.apply(cmd) == original.apply(cmd)
    assert restored.state_hash() == original.state_hash()
    for symbol in SYMBOLS:
        assert restored.books[symbol].depth(50) == original.books[symbol].depth(50)


def test_state_covers_pending_stops_and_expiries():
    cmds = random_commands(9, 1500, SYMBOLS)
    engine = MatchingEngine(SYMBOLS)
    for cmd in cmds:
        engine.apply(cmd)
    books = engine.books.values()
    assert any(len(book.stops) for book in books), "the stream should leave pending stops"
    assert any(book.expiries for book in books), "the stream should leave DAY/GTD orders"
    restored = MatchingEngine.from_state(engine.state())
    for symbol, book in engine.books.items():
        assert restored.books[symbol].stops.state() == book.stops.state()
