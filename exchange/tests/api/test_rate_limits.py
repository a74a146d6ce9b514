"""The API's rate limits (exchange/api/rate_limits.py, throttles.py): the sliding-window budgets on both
backends (in memory; Redis, from several processes at once), and end to end: the order budget holds
exactly, reads never spend it, batch and submit share it, a refused request costs nothing, and an
unreachable Redis is a 503 with Retry-After, never a 500."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

from exchange.api import rate_limits
from exchange.api.rate_limits import LocalLimiter, Rate, RedisLimiter, Take, parse_rate
from matching.tests.worker.stream_driver import REDIS_URL
from matching.worker.bus import Unavailable
from matching.worker.matcher import ORDER_ID_STRIDE

CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens there


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---- the budgets ---------------------------------------------------------------------------------


def test_rates_parse():
    assert parse_rate("10/s") == Rate(10, 1)
    assert parse_rate("1000/min") == Rate(1000, 60)
    assert parse_rate("10/5min") == Rate(10, 300)
    assert parse_rate("20/h") == Rate(20, 3600)
    assert parse_rate("1/day") == Rate(1, 86400)
    for bad in ("0/s", "10/week", "x/s", "10", "10/0min"):
        with pytest.raises(ValueError, match="N/period"):
            parse_rate(bad)


def test_a_budget_is_a_sliding_window():
    clock = FakeClock()
    limits = LocalLimiter(clock)
    budget = Take("k", Rate(3, 1.0))
    assert [limits.take_all([budget]) for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 0.25
    assert limits.take_all([budget]) == pytest.approx(0.75)  # when the first token leaves the window
    clock.now += 0.75  # the first three leave the window together
    assert [limits.take_all([budget]) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
    clock.now += 0.5
    assert limits.take_all([budget]) == pytest.approx(0.5)  # any one-second window holds three at most


def test_all_or_nothing_and_a_refusal_costs_nothing():
    clock = FakeClock()
    limits = LocalLimiter(clock)
    small, large = Take("small", Rate(2, 10.0)), Take("large", Rate(5, 10.0))
    assert limits.take_all([small, large]) == 0.0
    assert limits.take_all([small, large]) == 0.0
    for _ in range(20):  # refused: the large budget is not charged
        assert limits.take_all([small, large]) == pytest.approx(10.0)
    assert [limits.take_all([large]) for _ in range(4)] == [0.0, 0.0, 0.0, pytest.approx(10.0)]
    clock.now += 10.0
    assert limits.take_all([small, large]) == 0.0  # back as soon as the window moved, not later


def test_a_cost_of_zero_only_checks_and_take_up_to_grants_what_is_left():
    clock = FakeClock()
    limits = LocalLimiter(clock)
    budget = Take("orders", Rate(10, 1.0), cost=7)
    assert limits.take_up_to(budget) == (7, 0.0)
    assert limits.take_all([Take("orders", Rate(10, 1.0), cost=0)]) == 0.0  # three left, none taken
    clock.now += 0.5
    assert limits.take_up_to(budget) == (3, pytest.approx(0.5))  # the rest; the next frees in 0.5 s
    assert limits.take_all([Take("orders", Rate(10, 1.0), cost=0)]) == pytest.approx(0.5)
    assert limits.take_up_to(budget) == (0, pytest.approx(0.5))


def test_give_back_returns_one_token():
    limits = LocalLimiter(FakeClock())
    budget = Take("login", Rate(2, 60.0))
    limits.take_all([budget])
    limits.take_all([budget])
    assert limits.take_all([budget]) > 0
    limits.give_back([budget])
    assert limits.take_all([budget]) == 0.0


def test_the_local_budgets_are_atomic_across_threads():
    limits = LocalLimiter()
    start = threading.Barrier(16)
    granted: list[int] = []

    def hammer() -> None:
        start.wait()
        mine = sum(limits.take_all([Take("one", Rate(50, 60.0))]) == 0.0 for _ in range(100))
        mine += sum(limits.take_up_to(Take("batch", Rate(100, 60.0), cost=3))[0] for _ in range(100))
        granted.append(mine)

    threads = [threading.Thread(target=hammer) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 50 + 100


@pytest.fixture
def redis_limiter(redis_client, redis_prefix):
    limiter = RedisLimiter(REDIS_URL, redis_prefix)
    yield limiter
    limiter.close()


def test_the_redis_budgets_keep_the_same_rules(redis_limiter, redis_client, redis_prefix):
    small, large = Take("small", Rate(2, 60.0)), Take("large", Rate(5, 60.0))
    assert [redis_limiter.take_all([small, large]) for _ in range(2)] == [0.0, 0.0]
    waits = [redis_limiter.take_all([small, large]) for _ in range(5)]
    assert all(59 < wait <= 60 for wait in waits)  # refused, and nothing taken:
    assert redis_client.zcard(f"{redis_prefix}:large") == 2
    assert redis_limiter.take_up_to(Take("large", Rate(5, 60.0), cost=4))[0] == 3
    assert redis_limiter.take_all([Take("large", Rate(5, 60.0), cost=0)]) > 59
    redis_limiter.give_back([large])
    assert redis_limiter.take_all([Take("large", Rate(5, 60.0), cost=0)]) == 0.0
    assert 0 < redis_client.pttl(f"{redis_prefix}:large") <= 61_000  # the keys expire with the window


def test_a_redis_budget_slides(redis_limiter):
    budget = Take("fast", Rate(3, 0.3))
    assert [redis_limiter.take_all([budget]) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = redis_limiter.take_all([budget])
    assert 0 < wait <= 0.3
    time.sleep(wait + 0.05)
    assert redis_limiter.take_all([budget]) == 0.0


def _hammer(url, prefix, start, results, attempts):
    """One process: `attempts` single takes and as many three-token take_up_to's, as fast as it can."""
    limiter = RedisLimiter(url, prefix)
    start.wait()
    singles = sum(limiter.take_all([Take("one", Rate(50, 60.0)), Take("two", Rate(1000, 60.0))]) == 0.0
                  for _ in range(attempts))
    batched = sum(limiter.take_up_to(Take("batch", Rate(100, 60.0), cost=3))[0] for _ in range(attempts))
    results.put((singles, batched))
    limiter.close()


def test_the_redis_budgets_are_atomic_across_processes(redis_client, redis_prefix):
    processes, attempts = 4, 150
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=_hammer, args=(REDIS_URL, redis_prefix, start, results, attempts))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=10)
        assert worker.exitcode == 0
    assert sum(singles for singles, _ in outcomes) == 50  # exactly the limit, from 600 attempts
    assert redis_client.zcard(f"{redis_prefix}:two") == 50  # all or nothing: charged only with "one"
    assert sum(batched for _, batched in outcomes) == 100


def test_redis_down_is_unavailable_not_an_error():
    limiter = RedisLimiter(CLOSED_PORT_URL, "nowhere")
    with pytest.raises(Unavailable) as refused:
        limiter.take_all([Take("k", Rate(1, 1.0))])
    assert refused.value.retry_after >= 1
    assert "127.0.0.1" not in str(refused.value)  # the message names no URL
    with pytest.raises(Unavailable):
        limiter.take_up_to(Take("k", Rate(1, 1.0), cost=2))
    limiter.close()


def test_the_limiter_follows_the_settings(settings):
    settings.EXCHANGE_MODE = "embedded"
    assert isinstance(rate_limits.limiter(), LocalLimiter)
    settings.EXCHANGE_MODE, settings.REDIS_CACHE_URL = "production", CLOSED_PORT_URL
    assert isinstance(rate_limits.limiter(), RedisLimiter)
    assert rate_limits.limiter() is rate_limits.limiter()


# ---- end to end (alice: the embedded default, a logged-in session) --------------------------------


def order(**fields):
    return {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "100.00", **fields}


def submit(client, **fields):
    return client.post("/api/submit", order(**fields), content_type="application/json")


@pytest.fixture
def rates(settings):
    """A function that sets the API's rates (the rest as configured)."""

    def set_rates(**scopes: str) -> None:
        framework = settings.REST_FRAMEWORK
        configured = framework["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {**framework, "DEFAULT_THROTTLE_RATES": {**configured, **scopes}}

    return set_rates


def test_the_order_budget_holds_exactly_and_reads_never_spend_it(alice, rates):
    rates(submit="10/min")  # a minute: the same rule as 10/s, with no race against the clock
    first = submit(alice, price="90.00").json()["order_id"]
    for _ in range(20):  # reads (within the reads' own 100 a second): my order and orders, account, book
        for path in (f"/api/orders/{first}", "/api/orders", "/api/account", "/api/book/AAPL"):
            assert alice.get(path).status_code != 429, path
    assert [submit(alice, price=f"{91 + n}.00").status_code for n in range(9)] == [201] * 9
    limited = submit(alice)
    assert limited.status_code == 429  # the 11th order
    assert limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert alice.get(f"/api/orders/{first}").status_code != 429  # reads go on
    assert alice.get("/api/orders").status_code == 200
    # cancel, amend and cancel-all change orders: the same budget
    assert alice.delete(f"/api/cancel/{first}").status_code == 429
    assert alice.patch(f"/api/orders/{first}", {"quantity": "1"}, content_type="application/json"
                       ).status_code == 429
    assert alice.delete("/api/orders/open").status_code == 429


def test_batch_and_submit_share_the_order_budget(alice, rates):
    rates(submit="10/min")
    assert [submit(alice, price=f"{90 + n}.00").status_code for n in range(4)] == [201] * 4
    body = alice.post("/api/orders/batch", {"orders": [order(price=f"{80 + n}.00") for n in range(8)]},
                      content_type="application/json").json()
    statuses = [result["http_status"] for result in body["results"]]
    assert statuses == [201] * 6 + [429] * 2
    assert body["results"][7]["code"] == "rate_limited" and body["results"][7]["retry_after"] >= 1
    assert submit(alice).status_code == 429
    refused = alice.post("/api/orders/batch", {"orders": [order()]}, content_type="application/json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= 1


def test_a_refused_request_costs_nothing(alice, rates):
    # with 429s counted toward the minute's limit, this client would stay locked out for the minute
    rates(submit="2/s", sustained="6/min")
    assert [submit(alice, price=f"{90 + n}.00").status_code for n in range(2)] == [201, 201]
    assert {submit(alice).status_code for _ in range(20)} == {429}
    time.sleep(1.05)
    assert submit(alice, price="95.00").status_code == 201


def test_reads_flooding_into_429s_leave_order_entry_alone(alice, rates):
    rates(burst="5/min")  # per budget: the reads' five are not the orders' five
    answers = [alice.get("/api/orders").status_code for _ in range(8)]
    assert answers == [200] * 5 + [429] * 3
    assert submit(alice).status_code == 201
    assert alice.get("/api/account").status_code == 429


def test_production_mode_counts_in_redis(alice, settings, redis_client, redis_prefix):
    settings.EXCHANGE_MODE, settings.REDIS_CACHE_URL = "production", REDIS_URL
    settings.MATCHER_STREAM_PREFIX = redis_prefix
    # cancels of orders of a shard that does not run: the order budget, and no matcher asked
    settings.MATCHER_SHARDS = {0: ["AAPL"]}
    answers = [alice.delete(f"/api/cancel/{7 * ORDER_ID_STRIDE + n}").status_code for n in range(1, 12)]
    assert answers == [404] * 10 + [429]
    assert redis_client.keys(f"{redis_prefix}:ratelimit:submit:user:*")  # the order budget, in Redis


def test_redis_down_is_503_with_retry_after(alice, settings):
    settings.EXCHANGE_MODE, settings.REDIS_CACHE_URL = "production", CLOSED_PORT_URL
    for response in (submit(alice), alice.get("/api/orders"),
                     alice.post("/api/orders/batch", {"orders": [order()]}, content_type="application/json")):
        assert response.status_code == 503
        assert response.json()["code"] == "matcher_unavailable"
        assert int(response["Retry-After"]) >= 1
