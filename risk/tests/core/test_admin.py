"""Admin commands: acknowledgements, refusals that change nothing, and alerts for positions a
lowered limit (or fills of orders placed before it) leave beyond their limit."""

from __future__ import annotations

import pytest

from risk.core import (
    AccountUpdate,
    AdjustCash,
    AdminApplied,
    AdminKind,
    AdminRejected,
    AdminRejectReason,
    AlertKind,
    InstrumentRisk,
    RiskAlert,
    SetDefaultCash,
    SetInstrumentRisk,
    SetUserLimit,
    UserLimit,
)

from .conftest import CASH, SYM, Harness, of, risk_compiled

INVALID = AdminRejectReason.INVALID_VALUE


def test_deposits_and_withdrawals_down_to_what_is_reserved(r):
    r.buy(1, 100, 1_000)  # reserves 100,000
    events = r.admin(AdjustCash, 1, 5_000)
    assert events == [AdminApplied(AdminKind.ADJUST_CASH, "1", r.clock),
                      AccountUpdate(1, CASH + 5_000, 100_000, r.clock)]
    events = r.admin(AdjustCash, 1, -(CASH + 5_000 - 100_000) - 1)
    below = AdminRejectReason.BELOW_RESERVED
    assert events == [AdminRejected(AdminKind.ADJUST_CASH, "1", below, "", r.clock)]
    r.admin(AdjustCash, 1, -(CASH + 5_000 - 100_000))
    assert r.cash(1) == (100_000, 100_000)


def test_adjusting_an_unseen_owner_opens_the_account(r):
    assert r.admin(AdjustCash, 7, -CASH - 1)[0].reason is AdminRejectReason.BELOW_RESERVED
    assert r.risk.account(7) is None  # a refusal changes nothing
    assert of(r.admin(AdjustCash, 7, -CASH), AccountUpdate) == [AccountUpdate(7, 0, 0, r.clock)]


def test_default_cash_applies_to_accounts_opened_later(r):
    r.buy(1, 1, 100)
    r.default_cash(5)
    r.buy(2, 1, 5)
    assert r.cash(1)[0] == CASH and r.cash(2) == (5, 5)
    assert r.admin(SetDefaultCash, -1) == [AdminRejected(AdminKind.SET_DEFAULT_CASH, "", INVALID, "amount",
                                                         r.clock)]


@pytest.mark.parametrize(("changes", "field"), [
    ({"cash_per_tick_lot": 0}, "cash_per_tick_lot"),
    ({"max_position": -1}, "max_position"),
    ({"reference_price": 0}, "reference_price"),
    ({"reference_daily_volume": -5}, "reference_daily_volume"),
    ({"circuit_move_bps": 100, "circuit_halt_ns": 0}, "circuit_halt_ns"),
    ({"circuit_window_ns": -1}, "circuit_window_ns"),
    ({"symbol": ""}, "symbol"),
])
def test_invalid_instrument_configs_are_refused_with_the_field(r, changes, field):
    fields = {"symbol": SYM, "cash_per_tick_lot": 100, **changes}
    before = r.risk.state()
    events = r.admin(SetInstrumentRisk, InstrumentRisk(**fields))
    assert events == [AdminRejected(AdminKind.SET_INSTRUMENT_RISK, fields["symbol"], INVALID, field, r.clock)]
    assert r.risk.state() == before


@pytest.mark.parametrize(("changes", "field"), [({"price_band_bps": 1.5}, "price_band_bps"),
                                               ({"hold_volume_bps": True}, "hold_volume_bps")])
def test_wrongly_typed_config_values_never_configure_anything(r, changes, field):
    """Interpreted, the config reaches risk and is refused; compiled by mypyc, the class refuses a
    float when built, and typed code takes a bool for an int (as with the engine's commands)."""
    try:
        config = InstrumentRisk(SYM, 100, **changes)
    except TypeError:
        assert risk_compiled()
        return
    events = r.admin(SetInstrumentRisk, config)
    if risk_compiled() and type(changes[field]) is bool:
        assert events == [AdminApplied(AdminKind.SET_INSTRUMENT_RISK, SYM, r.clock)]
        return
    assert events == [AdminRejected(AdminKind.SET_INSTRUMENT_RISK, SYM, INVALID, field, r.clock)]


def test_user_limits_are_keyed_by_owner_and_symbol(r):
    assert r.admin(SetUserLimit, UserLimit(3, SYM, max_position=5)) == [
        AdminApplied(AdminKind.SET_USER_LIMIT, "3:AAPL", r.clock)]
    assert r.admin(SetUserLimit, UserLimit(3, SYM, max_order_qty=-2)) == [
        AdminRejected(AdminKind.SET_USER_LIMIT, "3:AAPL", INVALID, "max_order_qty", r.clock)]


def test_the_config_is_copied(r):
    config = InstrumentRisk(SYM, 1, max_order_qty=5)
    r.admin(SetInstrumentRisk, config)
    config.max_order_qty = 1
    assert of(r.buy(1, 5, 100), RiskAlert) == [] and r.risk.state()["symbols"][0][1][3] == 5


def test_lowering_a_limit_below_positions_raises_alerts_sorted_by_owner(r):
    r.configure(max_position=10)
    r.sell(2, 8, 100)
    r.buy(3, 3, 100)
    r.buy(1, 5, 100)
    events = r.configure(max_position=4)
    assert [(a.owner, a.kind) for a in of(events, RiskAlert)] == [(1, AlertKind.POSITION_LIMIT),
                                                                  (2, AlertKind.POSITION_LIMIT)]
    events = r.admin(SetUserLimit, UserLimit(3, SYM, max_position=2))
    assert [a.owner for a in of(events, RiskAlert)] == [3]


def test_fills_beyond_a_lowered_limit_raise_an_alert_but_stand(r):
    r.configure(max_position=10)
    r.buy(1, 10, 100)
    r.configure(max_position=5)  # no position yet: nothing to report
    r.admin(SetUserLimit, UserLimit(2, SYM, max_position=10))
    events = r.sell(2, 10, 100)  # within the seller's own limit
    alerts = of(events, RiskAlert)
    assert [(a.owner, a.symbol, a.kind) for a in alerts] == [(1, SYM, AlertKind.POSITION_LIMIT)]
    assert "position 10 beyond the limit 5" in alerts[0].detail
    assert r.position(1)[0] == 10


def test_instruments_of_other_symbols_are_independent():
    h = Harness()
    h.default_cash(10**9)
    h.configure(symbol="T", max_order_qty=1)
    assert not of(h.buy(1, 100, 10), RiskAlert) and h.position(1) == (0, 0, 0)


def test_config_changes_keeps_only_what_would_change_something(r):
    config = InstrumentRisk(SYM, 100, max_position=50)
    r.admin(SetInstrumentRisk, config)
    r.admin(SetUserLimit, UserLimit(1, SYM, 10, None))
    same = [SetInstrumentRisk(InstrumentRisk(SYM, 100, max_position=50)),
            SetUserLimit(UserLimit(1, SYM, 10, None))]
    assert r.risk.config_changes(same) == []
    changed = [
        SetDefaultCash(r.risk.cash.default_cash + 1),
        SetInstrumentRisk(InstrumentRisk(SYM, 100, max_position=51)),
        SetInstrumentRisk(InstrumentRisk("OTHER", 1)),  # not configured yet
        SetUserLimit(UserLimit(1, SYM, 11, None)),
        SetUserLimit(UserLimit(2, SYM, None, None)),  # removing an override that does not exist: no
        AdjustCash(1, 5),  # not configuration: always kept
    ]
    assert r.risk.config_changes(changed) == [c for i, c in enumerate(changed) if i != 4]
    assert r.risk.config_changes([SetUserLimit(UserLimit(1, SYM, None, None))]) != []  # removes one
