"""matching/reshard.py on real Redis streams and snapshot files: a legacy layout (the cash split across
two matching shards) moved to two balance shards with both symbols on one matching shard, and the
refusals that keep an undrained or busy exchange from being resharded. The whole operation through
processes and the projection is in worker/test_production_balances.py."""

from __future__ import annotations

from typing import Any

import pytest

from matching import reshard
from matching.engine import NewOrder, Side
from matching.worker.balance_codec import balance_entry, balance_stream_key, encode_balance_command
from matching.worker.codec import encode_command
from matching.worker.matcher import Matcher
from matching.worker.stream_runner import StreamRunner, entry_fields, stream_key
from risk.core import InstrumentRisk, SetDefaultCash, SetInstrumentRisk
from risk.core.balances import Adjust
from risk.core.cash import SettlementOutbox

LEGACY = reshard.Layout({0: ["AAPL"], 1: ["MSFT"]}, 0)
STARTING = 1_000  # each matching shard holds a share of 500


def legacy_shard(client: Any, data_dir: Any, prefix: str, shard: int, symbol: str, commands: list) -> None:
    """A stopped legacy matching shard: its commands applied and snapshotted at its stream's end (none)."""
    matcher = Matcher([symbol], shard=shard)
    for cmd in [SetDefaultCash(STARTING // 2), SetInstrumentRisk(InstrumentRisk(symbol, 1)), *commands]:
        matcher.apply(matcher.seq + 1, matcher.seq + 1, cmd)
    StreamRunner(matcher, client, shard, reshard.matcher_snapshots(data_dir, shard), prefix=prefix).snapshot()


@pytest.fixture
def legacy(redis_client, redis_prefix, tmp_path):
    # shard 0: owner 1 sells 2 AAPL at 10 to owner 2; shard 1: owner 3 sells 1 MSFT at 5 to owner 1
    legacy_shard(redis_client, tmp_path, redis_prefix, 0, "AAPL", [
        NewOrder(0, 1, "AAPL", Side.SELL, 2, 10), NewOrder(0, 2, "AAPL", Side.BUY, 2, 10)])
    legacy_shard(redis_client, tmp_path, redis_prefix, 1, "MSFT", [
        NewOrder(0, 3, "MSFT", Side.SELL, 1, 5), NewOrder(0, 1, "MSFT", Side.BUY, 1, 5)])
    return redis_client, tmp_path, redis_prefix


def test_a_legacy_layout_moves_to_balance_shards_with_every_share_of_cash(legacy):
    client, data_dir, prefix = legacy
    new = reshard.Layout({0: ["AAPL", "MSFT"]}, 2)
    plan = reshard.plan(client, data_dir, prefix, LEGACY, new, STARTING)
    # each owner's shares added up, the share of a shard that never saw them included
    assert plan.accounts == {1: 500 + 20 + 500 - 5, 2: 500 - 20 + 500, 3: 500 + 500 + 5}
    assert plan.cash_before == plan.cash_after == 3 * STARTING
    assert plan.moved == {"MSFT": (1, 0)}
    reshard.write(plan)

    restored = reshard.load_matcher(client, data_dir, prefix, 0, ["AAPL", "MSFT"], 2, None).matcher
    assert sorted(restored.engine.books) == ["AAPL", "MSFT"] and restored.balance_shards == 2
    assert restored.risk is not None and isinstance(restored.risk.cash, SettlementOutbox)
    positions = [restored.risk.position(1, "AAPL"), restored.risk.position(1, "MSFT")]
    assert [(p.qty, p.cost) for p in positions if p is not None] == [(-2, -20), (1, 5)]
    assert restored.engine.books["MSFT"].trade_seq == 1  # its trades go on numbering where they were
    retired = reshard.load_matcher(client, data_dir, prefix, 1, [], 2, None).matcher
    assert retired.engine.books == {} and retired.risk is not None
    assert retired.risk.ledger.accounts[1].positions == {}
    for b in (0, 1):
        shard = reshard.load_balances(client, data_dir, prefix, b, [0, 1]).shard
        assert {owner: shard.account(owner) for owner in shard.accounts} == {
            owner: (cash, 0) for owner, cash in plan.accounts.items() if owner % 2 == b}
        assert shard.default_cash == STARTING and shard.cursors == {0: 4, 1: 4}
    snapshots = list((data_dir / "shard-0-stream-snapshots").glob("snapshot-*.json"))
    assert len(snapshots) == 1  # nothing older to replay from

    # Once written, the same layout again changes nothing.
    again = reshard.plan(client, data_dir, prefix, new, new, STARTING)
    assert again.accounts == plan.accounts and again.moved == {}

    # The retired shard 1 takes MSFT back (from its own empty snapshot) and there are 3 balance shards.
    split = reshard.Layout({0: ["AAPL"], 1: ["MSFT"]}, 3)
    back = reshard.plan(client, data_dir, prefix, new, split, STARTING)
    assert back.moved == {"MSFT": (0, 1)} and back.cash_after == 3 * STARTING
    reshard.write(back)
    msft = reshard.load_matcher(client, data_dir, prefix, 1, ["MSFT"], 3, None).matcher
    assert msft.risk is not None and msft.engine.books["MSFT"].trade_seq == 1
    position = msft.risk.position(1, "MSFT")
    assert position is not None and (position.qty, position.cost) == (1, 5)


def test_an_undrained_stream_or_a_live_order_is_refused(legacy):
    client, data_dir, prefix = legacy
    new = reshard.Layout({0: ["AAPL"], 1: ["MSFT"]}, 1)
    order = NewOrder(0, 4, "MSFT", Side.BUY, 1, 4)
    client.xadd(stream_key(prefix, 1), entry_fields(encode_command(order)))  # type: ignore[arg-type]
    with pytest.raises(reshard.ReshardError, match="matching shard 1: its snapshot is at stream entry 0-0"):
        reshard.plan(client, data_dir, prefix, LEGACY, new, STARTING)
    client.delete(stream_key(prefix, 1))
    with pytest.raises(reshard.ReshardError, match=r"AAPL \(matching shard 0\) is not in the new layout"):
        reshard.plan(client, data_dir, prefix, LEGACY, reshard.Layout({1: ["MSFT"]}, 1), STARTING)
    with pytest.raises(reshard.ReshardError, match="the projection is at seq 3"):
        reshard.plan(client, data_dir, prefix, LEGACY, new, STARTING, projected={0: 3, 1: 4})
    legacy_shard(client, data_dir, prefix, 1, "MSFT", [  # as before, and a buy that rests
        NewOrder(0, 3, "MSFT", Side.SELL, 1, 5), NewOrder(0, 1, "MSFT", Side.BUY, 1, 5),
        NewOrder(0, 4, "MSFT", Side.BUY, 1, 4)])
    with pytest.raises(reshard.ReshardError, match="matching shard 1 has 1 live orders"):
        reshard.plan(client, data_dir, prefix, LEGACY, new, STARTING)
    snapshots = list((data_dir / "shard-1-stream-snapshots").glob("snapshot-*.json"))
    assert len(snapshots) == 2  # refusals write nothing


def test_a_balance_shard_with_commands_past_its_snapshot_is_refused(legacy):
    client, data_dir, prefix = legacy
    two = reshard.Layout({0: ["AAPL"], 1: ["MSFT"]}, 2)
    reshard.write(reshard.plan(client, data_dir, prefix, LEGACY, two, STARTING))
    client.xadd(balance_stream_key(prefix, 1), balance_entry(encode_balance_command(Adjust(3, 100, "", 0))))
    with pytest.raises(reshard.ReshardError, match="balance shard 1: its snapshot is at stream entry 0-0"):
        reshard.plan(client, data_dir, prefix, two, reshard.Layout(two.matching, 3), STARTING)
