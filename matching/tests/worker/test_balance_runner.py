"""The balance runner on a real Redis: R1 forwards funded orders with the web's reply address or answers
a refusal itself, R2 applies settlements once, admin commands are answered, a malformed entry is skipped,
and a restart (snapshot + silent replay of the tail) rebuilds the uninterrupted state and fences exactly
the unconfirmed tickets on each matching shard."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from matching.engine import AmendOrder, AmendRejected, NewOrder, RejectReason, Side
from matching.worker.balance_codec import (
    Place,
    PlaceAmend,
    balance_entry,
    balance_stream_key,
    encode_balance_command,
)
from matching.worker.balance_runner import BalanceRunner, balance_heartbeat_key
from matching.worker.codec import decode_command, encode_command
from matching.worker.formats import COMMAND_FORMAT, UnsupportedFormat
from matching.worker.matcher import Reply
from matching.worker.replies import decode_reply, unaddress
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import entry_timestamp, stream_key
from risk.core.balances import (
    TICKET_STRIDE,
    Adjust,
    BalanceShard,
    BalanceUpdate,
    ReservationVoided,
    Settle,
    SettleLine,
    SettleSkipped,
    Void,
)
from risk.core.commands import REFUSED, Fence, FundedAmend, FundedOrder, SetDefaultCash
from risk.core.events import AdminApplied, AdminRejected
from risk.core.types import AdminKind, AdminRejectReason

B = 1  # the balance shard under test
T = B * TICKET_STRIDE  # its first ticket is T + 1
CASH = 1_000_000
REPLIES = "replies:web-1"  # the web process's reply list, under the test's prefix


def decode_forward(payload: bytes) -> Any:
    return decode_command(payload)


def buy(owner: int, qty: int = 10, price: int = 100, symbol: str = "AAPL") -> NewOrder:
    return NewOrder(0, owner, symbol, Side.BUY, qty, price)


class Web:
    """What the web tier and the matching runners write to the balance stream, and what they read back."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self.reply_key = f"{prefix}:{REPLIES}"
        self.stream = balance_stream_key(prefix, B)
        self.requests = 0

    def send(self, cmd: Any, *, answer: bool = True) -> bytes:
        """XADD the command (with a reply address if `answer`); the request id."""
        self.requests += 1
        request_id = str(self.requests).encode()
        payload = encode_balance_command(cmd)
        if answer:
            self.client.xadd(self.stream, balance_entry(payload, self.reply_key, request_id))
        else:
            self.client.xadd(self.stream, balance_entry(payload))
        return request_id

    def replies(self) -> list[tuple[bytes, Reply]]:
        """The addressed replies pushed so far, decoded; the list emptied."""
        raw = self.client.lrange(self.reply_key, 0, -1)
        self.client.delete(self.reply_key)
        out = []
        for item in raw:
            request_id, encoded = unaddress(item)
            out.append((request_id, decode_reply(encoded)))
        return out

    def matching_entries(self, m: int) -> list[tuple[bytes, dict]]:
        return self.client.xrange(stream_key(self.prefix, m))


def make_runner(client: Any, prefix: str, snapshots: SnapshotStore | None = None, *,
                matching: tuple[int, ...] = (0, 1), default_cash: int | None = CASH, **options: Any
                ) -> BalanceRunner:
    shard = BalanceShard(B)
    if default_cash is not None:
        shard.apply(SetDefaultCash(default_cash))
    return BalanceRunner(shard, client, B, snapshots, prefix, list(matching), block_ms=10, **options)


def stamps(client: Any, stream: str) -> list[int]:
    """The timestamps the runner gives the stream's entries (from their ids, strictly increasing)."""
    out: list[int] = []
    for entry_id, _ in client.xrange(stream):
        out.append(entry_timestamp(entry_id, out[-1] if out else 0))
    return out


def drain(runner: BalanceRunner) -> int:
    total = 0
    while n := runner.step(None):
        total += n
    return total


@pytest.fixture
def web(redis_client, redis_prefix):
    return Web(redis_client, redis_prefix)


# ---- R1 ---------------------------------------------------------------------------------------


def test_a_place_that_fits_is_forwarded_with_the_web_reply_address(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    order = buy(7)
    request_id = web.send(Place(order, 1, 1_000))
    assert runner.step(None) == 1
    [(_, fields)] = web.matching_entries(1)
    assert fields[b"v"] == str(COMMAND_FORMAT).encode()
    assert fields[b"r"] == web.reply_key.encode()
    assert fields[b"i"] == request_id
    assert decode_forward(fields[b"c"]) == FundedOrder(order, T + 1, 1_000)
    assert web.matching_entries(0) == []
    assert web.replies() == []  # the matching shard answers the web, not R1
    assert runner.shard.account(7) == (CASH, 1_000)
    assert runner.shard.unconfirmed(1) == [T + 1]
    heartbeat = json.loads(redis_client.get(balance_heartbeat_key(redis_prefix, B)))
    assert heartbeat["seq"] == 1 and heartbeat["lag"] == 0


def test_a_place_that_does_not_fit_goes_on_refused_for_its_matching_shard_to_number_and_reject(
        redis_client, redis_prefix, web):
    """The matching shard answers it (rejected, insufficient_funds) under an order id of its own, so the
    order is in the history and the audit trail as in the embedded default; R1 answers nothing."""
    runner = make_runner(redis_client, redis_prefix)
    order = buy(7, qty=10_001)
    request_id = web.send(Place(order, 0, CASH + 1))
    runner.step(None)
    [(_, fields)] = web.matching_entries(0)
    assert decode_forward(fields[b"c"]) == FundedOrder(order, REFUSED, 0)
    assert (fields[b"r"], fields[b"i"]) == (web.reply_key.encode(), request_id)  # the web's address
    assert web.matching_entries(1) == [] and web.replies() == []
    assert runner.shard.account(7) is None  # a refused reservation opens nothing


def test_refusal_replies_expire(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix, reply_ttl=30, default_cash=100)
    web.send(Adjust(7, -1_000))  # below nothing: refused, answered by R1 itself
    runner.step(None)
    assert 0 < redis_client.ttl(web.reply_key) <= 30


def test_a_sell_reserves_nothing_and_still_gets_a_ticket(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix, default_cash=0)
    order = NewOrder(0, 7, "AAPL", Side.SELL, 5, 100)
    web.send(Place(order, 0, 0))
    runner.step(None)
    [(_, fields)] = web.matching_entries(0)
    assert decode_forward(fields[b"c"]) == FundedOrder(order, T + 1, 0)


def test_forwards_of_a_batch_go_out_in_ticket_order_per_matching_shard(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    for owner in range(10):
        web.send(Place(buy(owner), owner % 2, 100 * owner))
    web.send(Place(buy(99), 0, CASH + 1))  # refused: on to matching shard 0 too, last
    assert runner.step(None) == 11
    for m in (0, 1):
        tickets = [decode_forward(fields[b"c"]).ticket for _, fields in web.matching_entries(m)]
        refused = [REFUSED] if m == 0 else []
        assert tickets == [T + 1 + owner for owner in range(10) if owner % 2 == m] + refused
    assert web.replies() == []


def test_place_amend_extends_or_refuses(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix, default_cash=2_000)
    web.send(Place(buy(7), 1, 1_000))
    web.send(Place(buy(8), 1, 100))
    drain(runner)
    ticket = T + 1
    amend = AmendOrder(1_000_000_000_001, 7, "AAPL", 15, 100)

    request_id = web.send(PlaceAmend(amend, 1, ticket, 1_500))  # holds 1,000: extended by 500
    web.send(PlaceAmend(amend, 1, ticket, 1_200))  # holds 1,500 already: the plain amendment
    runner.step(None)
    forwarded = web.matching_entries(1)[2:]
    assert [decode_forward(fields[b"c"]) for _, fields in forwarded] == [FundedAmend(amend, ticket, 500),
                                                                         amend]
    assert forwarded[0][1][b"i"] == request_id and forwarded[0][1][b"r"] == web.reply_key.encode()
    assert runner.shard.account(7) == (2_000, 1_500)

    request_id = web.send(PlaceAmend(amend, 1, ticket, 2_001))  # 501 more: only 500 left
    foreign = AmendOrder(1_000_000_000_002, 8, "AAPL", 20, 100)
    foreign_id = web.send(PlaceAmend(foreign, 1, ticket, 1_600))  # owner 8 names owner 7's ticket
    runner.step(None)
    *_, ts, foreign_ts = stamps(redis_client, web.stream)
    funds, unknown = RejectReason.INSUFFICIENT_FUNDS, RejectReason.UNKNOWN_ORDER
    assert web.replies() == [
        (request_id, Reply(0, amend.order_id, [AmendRejected(amend.order_id, 7, "AAPL", funds, ts)], False,
                           amend)),
        (foreign_id, Reply(0, foreign.order_id, [AmendRejected(foreign.order_id, 8, "AAPL", unknown,
                                                               foreign_ts)], False, foreign)),
    ]
    assert len(web.matching_entries(1)) == 4  # nothing more forwarded
    assert runner.shard.account(7) == (2_000, 1_500)


# ---- R2 and admin ------------------------------------------------------------------------------


def test_settle_and_void_move_cash_once(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    seen: list[tuple[int, list]] = []
    runner.subscribe(seen.extend)
    web.send(Place(buy(7), 0, 1_000))  # T + 1
    web.send(Place(buy(8), 0, 500))  # T + 2
    drain(runner)
    fill = Settle(0, 5, [SettleLine(7, T + 1, -600, 600, 1_000_000_000_001, False)])
    web.send(fill, answer=False)
    web.send(fill, answer=False)  # redelivered after a matching runner's restart
    web.send(Void(0, [T + 1, T + 2]), answer=False)  # T + 1 is confirmed now: left alone
    assert drain(runner) == 3
    assert runner.shard.account(7) == (CASH - 600, 400)
    assert runner.shard.account(8) == (CASH, 0)
    assert runner.shard.cursor(0) == 5
    assert runner.shard.unconfirmed(0) == []
    assert [seq for seq, _ in seen] == [1, 2, 3, 4, 5]
    assert [type(e) for e in seen[3][1]] == [SettleSkipped]
    voided = [e for e in seen[4][1] if type(e) is ReservationVoided]
    assert [(e.ticket, e.owner, e.amount) for e in voided] == [(T + 2, 8, 500)]
    assert BalanceUpdate(8, CASH, 0, voided[0].timestamp) in seen[4][1]
    assert web.replies() == []  # never answered


def test_admin_commands_are_answered(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix, default_cash=0)
    seen: list[tuple[int, list]] = []
    runner.subscribe(seen.extend)
    ids = [
        web.send(Adjust(3, 500, "deposit-1")),
        web.send(Place(buy(3), 0, 400)),
        web.send(Adjust(3, -200, "withdraw-1")),  # would leave 300 under 400 reserved
        web.send(Adjust(3, 0, "zero")),
        web.send(SetDefaultCash(-1)),
        web.send(SetDefaultCash(5_000)),
    ]
    drain(runner)
    at = stamps(redis_client, web.stream)
    adjust = AdminKind.ADJUST_CASH
    assert web.replies() == [
        (ids[0], Reply(0, 0, [AdminApplied(adjust, "3", at[0])])),
        (ids[2], Reply(0, 0, [AdminRejected(adjust, "3", AdminRejectReason.BELOW_RESERVED, "", at[2])])),
        (ids[3], Reply(0, 0, [AdminRejected(adjust, "3", AdminRejectReason.INVALID_VALUE, "", at[3])])),
        (ids[4], Reply(0, 0, [AdminRejected(AdminKind.SET_DEFAULT_CASH, "", AdminRejectReason.INVALID_VALUE,
                                            "amount", at[4])], False, SetDefaultCash(-1, at[4]))),
        (ids[5], Reply(0, 0, [AdminApplied(AdminKind.SET_DEFAULT_CASH, "", at[5])], False,
                       SetDefaultCash(5_000, at[5]))),
    ]
    assert runner.shard.account(3) == (500, 400)
    assert runner.shard.default_cash == 5_000
    assert BalanceUpdate(3, 500, 0, at[0]) in seen[0][1]  # balances go to listeners, not replies


# ---- malformed and unknown entries -------------------------------------------------------------


def test_a_malformed_entry_does_not_stop_the_runner(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    redis_client.xadd(web.stream, balance_entry(b"\xc1garbage", web.reply_key, b"bad-1"))
    redis_client.xadd(web.stream, {"v": 1, "r": web.reply_key, "i": b"bad-2"})  # no command at all
    redis_client.xadd(web.stream, balance_entry(encode_command(buy(7)), web.reply_key, b"bad-3"))
    unknown_id = web.send(Place(buy(7), 5, 1_000))  # a matching shard not configured here: nothing held
    request_id = web.send(Place(buy(7), 0, 1_000))
    assert drain(runner) == 5
    assert runner.seq == 5
    assert web.replies() == [(b"bad-1", Reply(0, 0)), (b"bad-2", Reply(0, 0)), (b"bad-3", Reply(0, 0)),
                             (unknown_id, Reply(0, 0))]
    [(_, fields)] = web.matching_entries(0)
    assert fields[b"i"] == request_id
    assert decode_forward(fields[b"c"]) == FundedOrder(buy(7), T + 1, 1_000)
    assert runner.shard.account(7) == (CASH, 1_000)


def test_an_unknown_format_stops_the_runner_after_the_entries_before_it(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    request_id = web.send(Adjust(3, 500))
    redis_client.xadd(web.stream, {"v": 99, "c": encode_balance_command(Adjust(3, 1))})
    web.send(Adjust(3, 700))
    with pytest.raises(UnsupportedFormat):
        runner.step(None)
    assert runner.seq == 1
    assert runner.stream_id == redis_client.xrange(web.stream)[0][0].decode()
    assert [rid for rid, _ in web.replies()] == [request_id]
    with pytest.raises(UnsupportedFormat):  # never skipped
        runner.step(None)
    assert runner.shard.account(3) == (CASH + 500, 0)


def test_an_entry_without_a_format_is_not_guessed_at(redis_client, redis_prefix, web):
    runner = make_runner(redis_client, redis_prefix)
    redis_client.xadd(web.stream, {"c": encode_balance_command(Adjust(3, 1))})
    with pytest.raises(UnsupportedFormat):
        runner.step(None)
    assert runner.seq == 0


# ---- durability order and recovery -------------------------------------------------------------


def scenario(ticket: int = T) -> tuple[list[Any], list[Any]]:
    """Commands before a crash and after it (the tail the crashed runner never read)."""
    before: list[Any] = [
        Adjust(1, 5_000, "deposit"),
        Place(buy(1), 0, 1_000),  # +1, confirmed below
        Place(buy(2), 1, 2_000),  # +2, confirmed below
        Place(buy(3), 0, 3_000),  # +3, never confirmed
        Settle(0, 10, [SettleLine(1, ticket + 1, -400, 400, 101, False)]),
        Place(buy(4), 1, 4_000),  # +4
        Settle(1, 3, [SettleLine(2, ticket + 2, 0, 0, 102, False)]),
        Place(buy(5), 0, CASH + 1),  # refused
        Place(buy(6), 1, 500),  # +5
    ]
    after: list[Any] = [
        Place(buy(7), 0, 700),  # +6
        Settle(0, 11, [SettleLine(1, ticket + 1, -600, 600, 101, True)]),
        Place(buy(8), 1, CASH + 1),  # refused: never answered by a silent replay
        Place(buy(9), 1, 900),  # +7
        Adjust(9, 10),
    ]
    return before, after


def test_recovery_matches_an_uninterrupted_run_and_fences_the_unconfirmed(redis_client, redis_prefix, web,
                                                                          tmp_path):
    before, after = scenario()
    store = SnapshotStore(tmp_path)
    crashed = make_runner(redis_client, redis_prefix, store, snapshot_every=4, max_batch=4)
    for cmd in before:
        web.send(cmd)
    drain(crashed)
    latest = store.latest()
    assert latest is not None and latest[0] == 8  # entry 9 is after the snapshot
    for cmd in after:
        web.send(cmd)  # the runner "crashed": never read these
    web.replies()
    forwarded = {m: len(web.matching_entries(m)) for m in (0, 1)}
    assert forwarded == {0: 3, 1: 3}  # matching shard 0's third: buy(5), refused

    # The same commands through an uninterrupted runner of another prefix (no snapshots, no crash).
    reference_web = Web(redis_client, f"{redis_prefix}:ref")
    reference = make_runner(redis_client, reference_web.prefix)
    for cmd in before + after:
        reference_web.send(cmd)
    drain(reference)

    seen: list[tuple[int, list]] = []
    restarted = make_runner(redis_client, redis_prefix, store, snapshot_every=4)
    restarted.subscribe(seen.extend)
    assert restarted.recover() == 1 + len(after)
    assert restarted.shard.state_hash() == reference.shard.state_hash()
    assert restarted.seq == len(before) + len(after)
    assert [seq for seq, _ in seen] == list(range(9, 15))
    assert web.replies() == []  # replayed silently: no answers ...
    fences: dict[int, Any] = {}
    for m in (0, 1):
        entries = web.matching_entries(m)
        assert len(entries) == forwarded[m] + 1  # ... and no forwards, then one fence
        *_, (_, fields) = entries
        assert b"r" not in fields and b"i" not in fields
        fences[m] = decode_forward(fields[b"c"])
        assert type(fences[m]) is Fence
        assert fences[m].balance_shard == B
    assert list(fences[0].tickets) == reference.shard.unconfirmed(0) == [T + 3, T + 6]
    assert list(fences[1].tickets) == reference.shard.unconfirmed(1) == [T + 4, T + 5, T + 7]

    # The matching shards answer: shard 1 had received T + 4 (confirmed before its Void), nothing else.
    web.send(Settle(1, 4, [SettleLine(4, T + 4, 0, 0, 104, False)]), answer=False)
    web.send(Void(1, [T + 4, T + 5, T + 7]), answer=False)
    web.send(Void(0, [T + 3, T + 6]), answer=False)
    drain(restarted)
    assert restarted.shard.unconfirmed(0) == restarted.shard.unconfirmed(1) == []
    assert restarted.shard.account(4) == (CASH, 4_000)
    assert restarted.shard.total_reserved() == 4_000 + 2_000 - 0  # T + 4 and T + 2 still hold theirs
    assert restarted.shard.check() == []


def test_recovery_without_a_snapshot_replays_the_whole_stream(redis_client, redis_prefix, web):
    before, _ = scenario()
    crashed = make_runner(redis_client, redis_prefix)
    for cmd in before:
        web.send(cmd)
    drain(crashed)
    restarted = make_runner(redis_client, redis_prefix)
    assert restarted.recover() == len(before)
    assert restarted.shard.state_hash() == crashed.shard.state_hash()


def test_a_clean_restart_fences_nothing_when_everything_was_confirmed(redis_client, redis_prefix, web,
                                                                       tmp_path):
    store = SnapshotStore(tmp_path)
    runner = make_runner(redis_client, redis_prefix, store)
    web.send(Place(buy(1), 0, 100))
    web.send(Settle(0, 1, [SettleLine(1, T + 1, 0, 0, 11, False)]), answer=False)
    drain(runner)
    runner.snapshot()
    restarted = make_runner(redis_client, redis_prefix, store)
    assert restarted.recover() == 0
    assert len(web.matching_entries(0)) == 1  # the forward only
    assert web.matching_entries(1) == []


def test_a_failed_forward_takes_no_snapshot_and_needs_recovery(redis_client, redis_prefix, web, tmp_path):
    store = SnapshotStore(tmp_path)
    runner = make_runner(redis_client, redis_prefix, store, snapshot_every=1)
    redis_client.set(stream_key(redis_prefix, 1), "not a stream")  # XADD there fails in the transaction
    web.send(Place(buy(1), 0, 100))
    web.send(Place(buy(2), 1, 200))
    with pytest.raises(Exception, match="WRONGTYPE"):
        runner.step(None)
    assert runner.needs_recovery
    assert store.latest() is None  # a snapshot would cover a reservation whose forward was not sent
    with pytest.raises(RuntimeError):
        runner.step(None)
    redis_client.delete(stream_key(redis_prefix, 1))
    runner.recover()
    assert not runner.needs_recovery
    assert runner.shard.account(2) == (CASH, 200)
    fence = decode_forward(web.matching_entries(1)[-1][1][b"c"])
    assert fence == Fence(B, [T + 2], fence.timestamp)
    assert decode_forward(web.matching_entries(0)[-1][1][b"c"]) == Fence(B, [T + 1], fence.timestamp)


def test_run_serves_until_stopped_then_snapshots(redis_client, redis_prefix, web, tmp_path):
    store = SnapshotStore(tmp_path)
    runner = make_runner(redis_client, redis_prefix, store)
    runner.recover()  # first, as the process does: a command sent before it would be fenced, not served
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        request_id = web.send(Place(buy(7), 1, 1_000))
        deadline = time.monotonic() + 10
        while not web.matching_entries(1) and time.monotonic() < deadline:
            time.sleep(0.01)
        [(_, fields)] = web.matching_entries(1)
        assert fields[b"i"] == request_id
        # the heartbeat is set at the end of the step whose forward was just seen: wait for that end
        while not redis_client.exists(balance_heartbeat_key(redis_prefix, B)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert redis_client.exists(balance_heartbeat_key(redis_prefix, B))
    finally:
        runner.stop()
        thread.join(10)
    assert not thread.is_alive()
    latest = store.latest()
    assert latest is not None and latest[0] == 1
    state: Any = latest[1]
    assert BalanceShard.from_state(state["balances"]).state_hash() == runner.shard.state_hash()
    assert not redis_client.exists(balance_heartbeat_key(redis_prefix, B))  # callers fail fast now
