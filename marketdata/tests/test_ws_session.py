"""One connection's state without a socket (marketdata/session.py): conflation, the bound, gaps."""

from __future__ import annotations

import json

import pytest

from marketdata.session import ClientState, Outbox, ProtocolError, SlowConsumer, feed_request, parse


def md(symbol: str, seq: int, prev: int, asks: list | None = None, trades: tuple = ()) -> dict:
    text = json.dumps({"type": "level2_update", "symbol": symbol, "bids": [], "asks": asks or [], "seq": seq,
                       "prev_seq": prev, "checksum": 0, "timestamp": "t"})
    return {"type": "md.update", "symbol": symbol, "level2": (seq, prev, text), "ticker": None,
            "trades": trades, "candles": ()}


def drain(state: ClientState) -> list[dict]:
    out = []
    while state.outbox:
        text = state.render(*state.outbox.pop())
        if text is not None:
            out.append(json.loads(text))
    return out


def test_depth_is_conflated_while_queued_and_chains_onto_what_the_client_got():
    state = ClientState()
    state.subscribe("AAPL", {"level2", "trades"}, "1m", snapshot_seq=10)
    state.on_md_update(md("AAPL", 12, 10, trades=((11, '{"type":"trade","n":1}'),)))
    state.on_md_update(md("AAPL", 15, 12, trades=((14, '{"type":"trade","n":2}'),)))
    state.on_md_update(md("AAPL", 18, 15))
    got = drain(state)
    # the trades all arrive, in order; depth once, at its latest, chained onto the snapshot
    assert [m["type"] for m in got] == ["trade", "level2_update", "trade"]
    assert [m.get("n") for m in got if m["type"] == "trade"] == [1, 2]
    assert (got[1]["seq"], got[1]["prev_seq"]) == (18, 10)
    assert state.gaps == 0
    state.on_md_update(md("AAPL", 20, 18))
    assert [(m["seq"], m["prev_seq"]) for m in drain(state)] == [(20, 18)]


def test_a_lost_publication_shows_as_a_gap_even_when_conflated_over():
    state = ClientState()
    state.subscribe("AAPL", {"level2"}, "1m", snapshot_seq=10)
    state.on_md_update(md("AAPL", 12, 10))
    assert drain(state)[0]["prev_seq"] == 10
    state.on_md_update(md("AAPL", 20, 15))  # 15 never came
    state.on_md_update(md("AAPL", 22, 20))  # conflated over the gap: still visible
    (update,) = drain(state)
    assert update["seq"] == 22 and update["prev_seq"] != 12
    assert state.gaps == 1


def test_updates_older_than_the_snapshot_are_skipped_and_trades_before_it_too():
    state = ClientState()
    state.subscribe("AAPL", {"level2", "trades"}, "1m", snapshot_seq=30)
    state.on_md_update(md("AAPL", 25, 20, trades=((24, '{"type":"trade"}'),)))
    assert drain(state) == []
    state.on_md_update(md("AAPL", 33, 25, trades=((31, '{"type":"trade"}'),)))  # 25 <= 30: no gap
    got = drain(state)
    assert [m["type"] for m in got] == ["trade", "level2_update"]
    assert got[1]["prev_seq"] == 30 and state.gaps == 0


def test_publications_while_a_subscription_reads_its_snapshot_are_held_then_applied():
    state = ClientState()
    state.expect("AAPL")  # joined the group; the snapshot is being read
    state.on_md_update(md("AAPL", 28, 20, trades=((27, '{"type":"trade","n":27}'),)))  # in the snapshot
    state.on_md_update(md("AAPL", 33, 28, trades=((32, '{"type":"trade","n":32}'),)))  # after it
    assert len(state.outbox) == 0  # nothing queued before the snapshot
    state.subscribe("AAPL", {"level2", "trades"}, "1m", snapshot_seq=30)
    state.send({"type": "level2_snapshot", "seq": 30})
    state.settle("AAPL")
    got = drain(state)
    assert [(m["type"], m.get("n")) for m in got] == [("level2_snapshot", None), ("trade", 32),
                                                      ("level2_update", None)]
    assert (got[2]["seq"], got[2]["prev_seq"]) == (33, 30) and state.gaps == 0
    assert state.pending == {}
    state.on_md_update(md("AAPL", 35, 33))  # then live again, chained
    assert [(m["seq"], m["prev_seq"]) for m in drain(state)] == [(35, 33)]


def test_a_resubscription_holds_the_feeds_already_followed_without_doubling_them():
    state = ClientState()
    state.subscribe("AAPL", {"trades"}, "1m", snapshot_seq=10)
    state.expect("AAPL")  # adding level2
    state.on_md_update(md("AAPL", 12, 10, trades=((11, '{"type":"trade","n":11}'),)))
    state.on_md_update(md("AAPL", 14, 12, trades=((13, '{"type":"trade","n":13}'),)))
    state.subscribe("AAPL", {"level2"}, "1m", snapshot_seq=12)
    state.settle("AAPL")
    got = drain(state)
    assert [(m["type"], m.get("n"), m.get("prev_seq")) for m in got] == [
        ("trade", 11, None), ("trade", 13, None), ("level2_update", None, 12)]


def test_a_refused_subscription_releases_what_it_held():
    state = ClientState()
    state.expect("NOPE")
    state.on_md_update(md("NOPE", 3, 2))
    state.settle("NOPE")  # unknown symbol: nothing followed, nothing queued
    assert state.pending == {} and len(state.outbox) == 0


def test_trades_are_never_dropped_silently_past_the_bound_the_client_is_slow():
    state = ClientState(outbox_limit=5)
    state.subscribe("AAPL", {"level2", "trades"}, "1m", snapshot_seq=0)
    for n in range(5):
        state.on_md_update(md("AAPL", n + 1, n, trades=((n + 1, "{}"),)))
    assert len(state.outbox) == 6  # five trades and one conflated depth slot
    with pytest.raises(SlowConsumer):
        state.on_md_update(md("AAPL", 9, 5, trades=((9, "{}"),)))


def test_unsubscribe_drops_queued_depth_and_reports_when_the_symbol_is_gone():
    state = ClientState()
    state.subscribe("AAPL", {"level2", "trades"}, "1m", snapshot_seq=0)
    state.on_md_update(md("AAPL", 1, 0))
    assert not state.unsubscribe("AAPL", ["level2"])
    assert drain(state) == []
    assert state.unsubscribe("AAPL", ["trades"])
    assert state.symbols == {}


def test_outbox_slots_keep_their_place_and_only_texts_count():
    box = Outbox(limit=1)
    box.put_slot(("k",), 1)
    box.put("a")
    box.put_slot(("k",), 2)
    with pytest.raises(SlowConsumer):
        box.put("b")
    assert [box.pop(), box.pop()] == [(("k",), 2), ("text", "a")]


@pytest.mark.parametrize(("request_", "code"), [
    ({"action": "subscribe", "feed_types": ["level2"]}, "invalid_message"),
    ({"action": "subscribe", "symbol": "A", "feed_types": ["level2", 3]}, "invalid_message"),
    ({"action": "subscribe", "symbol": "A", "feed_types": ["x"]}, "unknown_feed_type"),
    ({"action": "subscribe", "symbol": "A", "feed_types": ["candles"], "interval": 5}, "invalid_interval"),
])
def test_feed_requests_are_checked(request_, code):
    with pytest.raises(ProtocolError) as refused:
        feed_request(request_)
    assert refused.value.code == code


def test_parse_keeps_prices_exact():
    request = parse('{"action": "order.submit", "price": 150.10, "id": 1}')
    assert request["price"] == "150.10"  # the REST parser's JSONNumber: the text as written
