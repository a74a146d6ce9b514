"""The private feed and order entry over /ws, against the real embedded matcher: each user sees only their
own orders and fills; logging out ends a session's private feed; order requests answer exactly what
the REST API answers for the same input (valid, invalid, rejected, rate-limited)."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django.test import Client

from marketdata.tests.ws import (
    aplace,
    connect,
    receive_until,
    request,
    run,
    send,
    session_cookie,
    token_for,
)


def _rest(client: Client, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    call = getattr(client, method)
    response = call(path, data=json.dumps(body or {}), content_type="application/json")
    return response.status_code, response.json()


async def rest(client: Client, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    return await sync_to_async(_rest, thread_sensitive=False)(client, method, path, body)


def comparable(body: dict) -> dict:
    """A result without what differs between two orders of the same shape (ids, timing)."""
    out = {k: v for k, v in body.items() if k not in ("order_id", "latency_us")}
    if "trades" in out:
        out["trades"] = [{k: v for k, v in t.items() if k not in ("trade_id", "timestamp")}
                         for t in out["trades"]]
    return out


def test_two_users_private_feeds_never_mix(embedded, django_user_model):
    alice = django_user_model.objects.create_user("alice", password="pw")
    bob = django_user_model.objects.create_user("bob", password="pw")
    browser = Client()
    browser.force_login(bob)

    async def scenario() -> None:
        key = await sync_to_async(token_for)(alice)
        a = await connect(headers=[(b"authorization", f"Token {key}".encode())])
        b = await connect(headers=[session_cookie(browser)])
        for comm in (a, b):
            answer = await request(comm, {"action": "subscribe", "feed_types": ["orders"], "id": 1})
            assert answer == {"type": "subscribed", "symbol": None, "feed_types": ["orders"], "id": 1}
        rested = await aplace(alice.pk, "sell", "120.00", "5")
        taken = await aplace(bob.pk, "buy", "120.00", "2")
        got_a = await receive_until(a, lambda m: m["type"] == "order" and m["status"] == "partially_filled")
        got_b = await receive_until(b, lambda m: m["type"] == "order" and m["status"] == "filled")
        assert {m["order_id"] for m in got_a} == {rested.order_id}
        assert {m["order_id"] for m in got_b} == {taken.order_id}
        assert [m["status"] for m in got_a if m["type"] == "order"] == ["open", "partially_filled"]
        fill_a = next(m for m in got_a if m["type"] == "fill")
        assert (fill_a["side"], fill_a["price"], fill_a["quantity"], fill_a["liquidity"]) == \
            ("sell", "120.00", "2", "maker")
        last_a = got_a[-1]
        assert (last_a["quantity"], last_a["remaining_quantity"], last_a["filled_quantity"]) == \
            ("5", "3", "2")
        fill_b = next(m for m in got_b if m["type"] == "fill")
        assert (fill_b["side"], fill_b["liquidity"]) == ("buy", "taker")
        assert fill_b["trade_id"] == fill_a["trade_id"]
        # a ping answered with nothing before it: no update of the other's order is on its way
        await send(a, {"action": "ping", "id": "x"})
        assert await receive_until(a, lambda m: m["type"] == "pong") == [{"type": "pong", "id": "x"}]
        await a.disconnect()
        await b.disconnect()

    run(scenario)


def test_private_feed_and_order_entry_need_a_login_and_a_valid_token(embedded, django_user_model):
    user = django_user_model.objects.create_user("carol")

    async def scenario() -> None:
        comm = await connect()
        refused = await request(comm, {"action": "subscribe", "feed_types": ["orders"], "id": 7})
        assert refused["code"] == "authentication_required" and refused["id"] == 7
        refused = await request(comm, {"action": "order.submit", "id": 8, "symbol": "AAPL", "side": "buy",
                                       "quantity": "1", "price": "10.00"})
        assert (refused["type"], refused["code"], refused["id"]) == ("error", "authentication_required", 8)
        bad = await request(comm, {"action": "auth", "token": "not-a-token"})
        assert bad["code"] == "authentication_failed"
        key = await sync_to_async(token_for)(user)
        good = await request(comm, {"action": "auth", "token": key, "id": 9})
        assert good == {"type": "authenticated", "username": "carol", "id": 9}
        subscribed = await request(comm, {"action": "subscribe", "feed_types": ["orders"]})
        assert subscribed["type"] == "subscribed"
        await comm.disconnect()
        header = await connect(headers=[(b"authorization", b"Token wrong")])
        told = await receive_until(header, lambda m: True)
        assert told[0]["code"] == "authentication_failed"
        await header.disconnect()

    run(scenario)


def test_logging_out_ends_the_sessions_private_feed(embedded, django_user_model):
    dave = django_user_model.objects.create_user("dave", password="pw")
    browser = Client()
    assert browser.login(username="dave", password="pw")

    async def scenario() -> None:
        comm = await connect(headers=[session_cookie(browser)])
        await request(comm, {"action": "subscribe", "feed_types": ["orders"]})
        await sync_to_async(browser.logout, thread_sensitive=False)()
        ended = await receive_until(comm, lambda m: m["type"] == "unsubscribed")
        assert ended[-1] == {"type": "unsubscribed", "symbol": None, "feed_types": ["orders"],
                             "reason": "logged_out"}
        await aplace(dave.pk, "buy", "50.00", "1")  # an update dave's session must no longer get
        watcher = await connect(headers=[(b"authorization",
                                          f"Token {await sync_to_async(token_for)(dave)}".encode())])
        await request(watcher, {"action": "subscribe", "feed_types": ["orders"]})
        await aplace(dave.pk, "buy", "50.00", "1")
        await receive_until(watcher, lambda m: m["type"] == "order")  # published by now
        await send(comm, {"action": "ping", "id": 1})
        assert await receive_until(comm, lambda m: m["type"] == "pong") == [{"type": "pong", "id": 1}]
        refused = await request(comm, {"action": "order.cancel", "id": 2, "order_id": 1})
        assert refused["code"] == "authentication_required"
        await comm.disconnect()
        await watcher.disconnect()

    run(scenario)


def test_order_entry_answers_exactly_as_rest(embedded, django_user_model, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,  # more orders than the default 10 a second
                               "DEFAULT_THROTTLE_RATES": {"submit": "1000/s", "burst": "1000/s",
                                                          "sustained": "10000/min"}}
    erin = django_user_model.objects.create_user("erin", password="pw")
    browser = Client()
    browser.force_login(erin)

    async def scenario() -> None:
        comm = await connect(headers=[session_cookie(browser)])
        cases: list[dict[str, Any]] = [
            {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "99.50"},  # rests
            {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "99.505"},  # off the tick: 400
            {"symbol": "AAPL", "side": "sideways", "quantity": "2", "price": "99.50"},  # 400
            {"symbol": "NOPE", "side": "buy", "quantity": "2", "price": "99.50"},  # unknown symbol
            {"symbol": "AAPL", "side": "buy", "quantity": "1", "type": "market"},  # no liquidity: canceled
            {"symbol": "AAPL", "side": "buy", "quantity": "2", "price": "99.50", "surprise": 1},  # 400
        ]
        for n, body in enumerate(cases):
            status, answer = await rest(browser, "post", "/api/submit", body)
            result = await request(comm, {"action": "order.submit", "id": n, **body})
            assert (result["type"], result["id"], result["status"]) == ("order.result", n, status), result
            assert comparable(result["result"]) == comparable(answer), body
        # cancel and amend: the WebSocket's own order, then the same calls over REST on a twin
        order = {"symbol": "AAPL", "side": "buy", "quantity": "3", "price": "98.00"}
        ws_order = (await request(comm, {"action": "order.submit", "id": "a", **order}))["result"]["order_id"]
        rest_order = (await rest(browser, "post", "/api/submit", order))[1]["order_id"]
        amended = await request(comm, {"action": "order.amend", "id": "b", "order_id": ws_order,
                                       "quantity": "2"})
        status, answer = await rest(browser, "patch", f"/api/orders/{rest_order}", {"quantity": "2"})
        assert amended["status"] == status == 200
        assert comparable(amended["result"]) == comparable(answer)
        canceled = await request(comm, {"action": "order.cancel", "id": "c", "order_id": ws_order})
        status, answer = await rest(browser, "delete", f"/api/cancel/{rest_order}")
        assert canceled["status"] == status == 200
        assert comparable(canceled["result"]) == comparable(answer)
        again = await request(comm, {"action": "order.cancel", "id": "d", "order_id": ws_order})
        status, answer = await rest(browser, "delete", f"/api/cancel/{rest_order}")
        assert (again["status"], again["result"]) == (status, answer) == (409, answer)
        missing = await request(comm, {"action": "order.cancel", "id": "e", "order_id": 999})
        status, answer = await rest(browser, "delete", "/api/cancel/999")
        assert (missing["status"], missing["result"]) == (status, answer)
        bad_id = await request(comm, {"action": "order.cancel", "id": "f", "order_id": "x"})
        assert bad_id["status"] == 400 and bad_id["result"]["code"] == "invalid_request"
        await comm.disconnect()

    run(scenario)


def test_order_entry_shares_the_rest_rate_limit(embedded, django_user_model, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"submit": "3/min", "burst": "100/s",
                                                          "sustained": "1000/min"}}
    fred = django_user_model.objects.create_user("fred", password="pw")
    browser = Client()
    browser.force_login(fred)
    body = {"symbol": "AAPL", "side": "buy", "quantity": "1", "price": "90.00"}

    async def scenario() -> None:
        comm = await connect(headers=[session_cookie(browser)])
        assert (await rest(browser, "post", "/api/submit", body))[0] == 201  # one budget for both doors
        statuses = [(await request(comm, {"action": "order.submit", "id": n, **body}))["status"]
                    for n in range(3)]
        assert statuses == [201, 201, 429]
        status, answer = await rest(browser, "post", "/api/submit", body)
        limited = await request(comm, {"action": "order.submit", "id": 9, **body})
        assert (limited["status"], limited["result"]["code"]) == (status, answer["code"])
        assert status == 429
        assert limited["result"].keys() == answer.keys()
        await comm.disconnect()

    run(scenario)


def test_deleting_the_token_or_deactivating_the_user_ends_private_access(embedded, django_user_model):
    """Besides logging out: an open socket keeps no private feed or order entry once its token is
    deleted, or its user deactivated (through the ORM, as the admin does)."""
    from rest_framework.authtoken.models import Token

    frank = django_user_model.objects.create_user("frank", password="pw")
    browser = Client()
    browser.force_login(frank)

    async def scenario() -> None:
        key = await sync_to_async(token_for)(frank)
        by_token = await connect(headers=[(b"authorization", f"Token {key}".encode())])
        by_session = await connect(headers=[session_cookie(browser)])
        for comm in (by_token, by_session):
            subscribed = await request(comm, {"action": "subscribe", "feed_types": ["orders"]})
            assert subscribed["type"] == "subscribed"

        await sync_to_async(lambda: Token.objects.filter(key=key).delete(), thread_sensitive=False)()
        ended = await receive_until(by_token, lambda m: m["type"] == "unsubscribed")
        assert ended[-1]["reason"] == "token_deleted"
        refused = await request(by_token, {"action": "order.cancel", "id": 1, "order_id": 1})
        assert refused["code"] == "authentication_required"
        await send(by_session, {"action": "ping", "id": 2})  # the session's socket is not the token's
        assert await receive_until(by_session, lambda m: m["type"] == "pong") == [{"type": "pong", "id": 2}]

        def deactivate() -> None:
            frank.is_active = False
            frank.save()

        await sync_to_async(deactivate, thread_sensitive=False)()
        ended = await receive_until(by_session, lambda m: m["type"] == "unsubscribed")
        assert ended[-1]["reason"] == "user_inactive"
        refused = await request(by_session, {"action": "subscribe", "feed_types": ["orders"]})
        assert refused["code"] == "authentication_required"
        await by_token.disconnect()
        await by_session.disconnect()

    run(scenario)
