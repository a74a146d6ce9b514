"""Changing the shard layout of a stopped production exchange (issue 13): the number of balance shards,
and which matching shard owns which symbol (docs/ARCHITECTURE.md, "Changing the shard layout").

Every runner keeps its state in snapshots beside its Redis Stream. With the exchange drained (no web
process, every runner stopped cleanly, so each snapshot covers its whole stream) and no live order (no
reservation anywhere), the layout is a pure function of those states:

    load        each old shard's newest snapshot, through its own runner (StreamRunner, BalanceRunner),
                checked to cover its stream and, for a matching shard, its projection
    plan        every account's cash gathered by user (from the balance shards, or from the matching
                shards' shares when there were none) and dealt to user % N; each moving symbol's book,
                risk state, positions, user limits and client order ids moved to its new shard; each
                matching shard's risk set to emit settlements for N balance shards; each balance
                shard's cursors set to the matching shards' seqs, its tickets numbered past any fence
    check       total cash before == after (and the starting cash of users no shard saw is unchanged)
    write       one snapshot per shard, old and new, at its current seq and stream position, and no
                older one (a restart cannot replay the stream from before the move)

Nothing is written unless everything checks. Plain functions over the runners and the cores: the
management command (`manage.py reshard`) adds the settings and rewrites the projection's balances.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis

from matching.worker.balance_runner import BalanceRunner
from matching.worker.matcher import Matcher
from matching.worker.snapshots import SnapshotStore
from matching.worker.stream_runner import START, StreamRunner, parse_id
from risk.core.accounts import Holdings
from risk.core.balances import TICKET_STRIDE, BalanceShard
from risk.core.cash import CashStage, LocalSettlement, SettlementOutbox
from risk.core.engine import RiskEngine


class ReshardError(Exception):
    """The layout cannot change now; nothing was written."""


def matcher_snapshots(data_dir: Path, shard: int) -> SnapshotStore:
    return SnapshotStore(data_dir / f"shard-{shard}-stream-snapshots")


def balance_snapshots(data_dir: Path, shard: int) -> SnapshotStore:
    return SnapshotStore(data_dir / f"balance-{shard}-snapshots")


@dataclass(slots=True)
class Layout:
    matching: dict[int, list[str]]  # matching shard -> its symbols
    balance_shards: int  # 0: the cash lives in the matching shards (each a share of every account)


@dataclass(slots=True)
class Plan:
    """The shards' states after the change, ready to write, and what was checked."""

    matchers: dict[int, StreamRunner]
    balances: dict[int, BalanceRunner]
    cash_before: int
    cash_after: int
    moved: dict[str, tuple[int, int]] = field(default_factory=dict)  # symbol -> (from, to)
    accounts: dict[int, int] = field(default_factory=dict)  # owner -> cash units, in its new shard


def _stream_end(client: redis.Redis, stream: str) -> str:
    try:
        info = client.xinfo_stream(stream)
    except redis.ResponseError:  # no such stream: nothing was ever sent to the shard
        return START
    last = info.get("last-generated-id", b"0-0")
    return last.decode() if isinstance(last, bytes) else str(last)


def _drained(what: str, stream_id: str, end: str) -> None:
    if parse_id(stream_id) != parse_id(end):
        raise ReshardError(f"{what}: its snapshot is at stream entry {stream_id}, its stream ends at {end}; "
                           "drain first (stop the web tier, let every shard catch up, stop the runners)")


def load_matcher(client: redis.Redis, data_dir: Path, prefix: str, shard: int, symbols: Iterable[str],
                 balance_shards: int, projected: int | None) -> StreamRunner:
    """A matching shard's state as its runner would restore it; refused unless its snapshot covers its
    stream and (`projected`: the projection's cursor, None to skip) the projection holds all of it."""
    runner = StreamRunner(Matcher(symbols, shard=shard, balance_shards=balance_shards), client, shard,
                          matcher_snapshots(data_dir, shard), prefix=prefix)
    runner.restore_snapshot()
    _drained(f"matching shard {shard}", runner.stream_id, _stream_end(client, runner.stream))
    if projected is not None and projected != runner.matcher.seq:
        raise ReshardError(f"matching shard {shard}: the projection is at seq {projected}, the shard at "
                           f"{runner.matcher.seq}; start it again and stop it once projected")
    return runner


def load_balances(client: redis.Redis, data_dir: Path, prefix: str, shard: int,
                  matching: list[int]) -> BalanceRunner:
    runner = BalanceRunner(BalanceShard(shard), client, shard, balance_snapshots(data_dir, shard), prefix,
                           matching)
    runner.restore_snapshot()
    _drained(f"balance shard {shard}", runner.stream_id, _stream_end(client, runner.stream))
    return runner


def plan(client: redis.Redis, data_dir: Path, prefix: str, old: Layout, new: Layout, starting_cash: int,
         projected: Mapping[int, int] | None = None) -> Plan:
    """The new shards' states (see the module), or ReshardError. `starting_cash`: a new account's cash
    (cash units) in the new layout; `projected`: each matching shard's projection cursor."""
    if new.balance_shards < 1:
        raise ReshardError("the new layout needs at least one balance shard (BALANCE_SHARDS >= 1)")
    owner_of = {symbol: m for m, symbols in new.matching.items() for symbol in symbols}
    old_matching = sorted(old.matching)
    matchers = {m: load_matcher(client, data_dir, prefix, m, old.matching[m], old.balance_shards,
                                None if projected is None else projected.get(m, 0)) for m in old_matching}
    balances = {b: load_balances(client, data_dir, prefix, b, old_matching)
                for b in range(old.balance_shards)}
    _no_live_orders(matchers, balances)

    # Every account's cash, by owner (a legacy layout: each matching shard's share of it).
    cash: dict[int, int] = {}
    if old.balance_shards:
        for runner in balances.values():
            shard = runner.shard
            if shard.default_cash != starting_cash:
                raise ReshardError(f"balance shard {shard.shard} opens accounts with {shard.default_cash}, "
                                   f"the settings with {starting_cash}: start it once to apply them")
            for owner, balance in shard.accounts.items():
                cash[owner] = cash.get(owner, 0) + balance.cash
    else:
        stages = [stage for stage in map(_cash_stage, matchers.values()) if stage is not None]
        if stages and sum(stage.default_cash for stage in stages) != starting_cash:
            raise ReshardError("the matching shards' shares of the starting cash do not add up to it: "
                               "start them once with these settings")
        owners = {owner for stage in stages for owner in stage.balances.accounts}
        for owner in owners:
            cash[owner] = sum((stage.balances.account(owner) or (stage.default_cash, 0))[0]
                              for stage in stages)
    before = sum(cash.values())

    # The matching shards: every symbol to its new shard, every risk stage to N balance shards.
    for m in sorted(new.matching):
        if m not in matchers:  # a new shard, or one an earlier change retired (empty, at its stream's end)
            matchers[m] = load_matcher(client, data_dir, prefix, m, [], old.balance_shards, None)
    _no_live_orders(matchers, {})
    moved: dict[str, tuple[int, int]] = {}
    for m in old_matching:
        for symbol in sorted(matchers[m].matcher.engine.books):
            target = owner_of.get(symbol)
            if target is None:
                raise ReshardError(f"{symbol} (matching shard {m}) is not in the new layout")
            if target != m:
                _move_symbol(symbol, matchers[m].matcher, matchers[target].matcher)
                moved[symbol] = (m, target)
    for matching_runner in matchers.values():
        _emit_settlements(matching_runner.matcher, new.balance_shards)

    # The balance shards: each account in user % N, cursors at the matching shards' seqs.
    seqs = {m: matching_runner.matcher.seq for m, matching_runner in matchers.items()}
    fenced: dict[int, int] = {}
    for matching_runner in matchers.values():
        risk = matching_runner.matcher.risk
        for b, ticket in ({} if risk is None else risk.fenced).items():
            fenced[b] = max(fenced.get(b, 0), ticket)
    new_balances: dict[int, BalanceRunner] = {}
    for b in range(max(new.balance_shards, old.balance_shards)):
        runner = balances.get(b) or load_balances(client, data_dir, prefix, b, sorted(matchers))
        old_shard = runner.shard
        shard = BalanceShard(b)
        shard.default_cash = starting_cash
        shard.next_ticket = max(old_shard.next_ticket, fenced.get(b, 0) + 1, b * TICKET_STRIDE + 1)
        shard.cursors = {m: max(seq, old_shard.cursors.get(m, 0)) for m, seq in seqs.items()}
        runner.shard = shard
        runner.matching_shards = sorted(matchers)
        new_balances[b] = runner
    for owner in sorted(cash):
        new_balances[owner % new.balance_shards].shard.open_account(owner)
        new_balances[owner % new.balance_shards].shard.accounts[owner].cash = cash[owner]
    for runner in new_balances.values():
        runner.shard.forget_changes()
    after = sum(balance.cash for runner in new_balances.values()
                for balance in runner.shard.accounts.values())
    if after != before:
        raise ReshardError(f"cash before {before} and after {after} differ: nothing written")
    return Plan(matchers, new_balances, before, after, moved, cash)


def write(result: Plan) -> None:
    """Each shard's new state as its only snapshot (its seq and stream position unchanged)."""
    for matching in result.matchers.values():
        matching.snapshot()
        assert matching.snapshots is not None
        matching.snapshots.discard_older_than(matching.matcher.seq)
    for balances in result.balances.values():
        balances.snapshot()
        assert balances.snapshots is not None
        balances.snapshots.discard_older_than(balances.seq)


def _no_live_orders(matchers: Mapping[int, StreamRunner], balances: Mapping[int, BalanceRunner]) -> None:
    for m, runner in matchers.items():
        matcher = runner.matcher
        live: set[int] = set()
        for book in matcher.engine.books.values():
            live.update(book.orders)
        if matcher.risk is not None:
            live.update(matcher.risk.held)
            live.update(matcher.risk.ledger.orders)
        if live:
            raise ReshardError(f"matching shard {m} has {len(live)} live orders: "
                               "cancel every open order first")
    for b, balance_runner in balances.items():
        held = len(balance_runner.shard.reservations)
        if held:
            raise ReshardError(f"balance shard {b} holds {held} reservations: cancel every open order first")


def _cash_stage(runner: StreamRunner) -> CashStage | None:
    """A legacy matching shard's own balance shard (its share of every account), if its risk is on."""
    risk = runner.matcher.risk
    if risk is None:
        return None
    stage = risk.cash
    if isinstance(stage, LocalSettlement):
        return stage.bank
    return stage if isinstance(stage, CashStage) else None


def _move_symbol(symbol: str, source: Matcher, target: Matcher) -> None:
    """The symbol's book (its trade numbering and last price), risk state, positions, user limits and
    client order ids, from one matcher to another (no live order: checked before)."""
    target.engine.books[symbol] = source.engine.books.pop(symbol)
    for coid in [coid for coid in source.client_order_ids if coid[1] == symbol]:
        target.client_order_ids[coid] = source.client_order_ids.pop(coid)
    risk = source.risk
    if risk is None:
        return
    if target.risk is None:
        target.risk = RiskEngine(target.engine, stage=SettlementOutbox(1, target.shard))
    into = target.risk
    sym = risk.symbols.pop(symbol, None)
    if sym is not None:
        into.symbols[symbol] = sym
    for key in [key for key in risk.user_limits if key[1] == symbol]:
        into.user_limits[key] = risk.user_limits.pop(key)
    for owner, holdings in risk.ledger.accounts.items():
        position = holdings.positions.pop(symbol, None)
        if position is not None:
            into.ledger.accounts.setdefault(owner, Holdings(owner, {})).positions[symbol] = position
    risk.update_deadline()
    into.update_deadline()


def _emit_settlements(matcher: Matcher, balance_shards: int) -> None:
    """The matcher's risk settles with `balance_shards` balance shards elsewhere (through its state, so
    the risk engine is built as a restart builds it)."""
    matcher.balance_shards = balance_shards
    risk = matcher.risk
    if risk is None:
        matcher.risk = RiskEngine(matcher.engine, stage=SettlementOutbox(balance_shards, matcher.shard))
        return
    state = risk.state()
    state.pop("balances", None)
    state.pop("local_balances", None)
    state["outbox"] = [balance_shards, matcher.shard]
    matcher.risk = RiskEngine.from_state(state, matcher.engine)
