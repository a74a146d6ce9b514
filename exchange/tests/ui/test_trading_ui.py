"""The trading screen in a real browser (Debian's chromium, driven by Playwright) against a live
exchange with the demo market maker quoting: the scenarios of issue 12, and the screenshots in
docs/screenshots/ (README). Each test uses users of its own, so they share one server.

Waits are Playwright's `expect` (retried until the condition holds, or fails after the timeout),
never sleeps followed by assertions on time.
"""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from typing import Any

import pytest

from exchange.tests.ui.conftest import PageProblems, log_in, screenshot

pytest.importorskip("playwright", reason="!!! PLAYWRIGHT NOT INSTALLED: the browser tests did NOT run !!!")
from playwright.sync_api import expect

expect.set_options(timeout=15_000)  # a slow 2-core machine: the default 5 s is tight for a first page

PASSWORD = "a-Long-secret-42"
_names = itertools.count(1)


def sign_up(page: Any, prefix: str) -> str:
    """A new user through the sign-up page (so every test starts with fresh cash and no orders)."""
    username = f"{prefix}{next(_names)}"
    page.goto("/accounts/signup/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.wait_for_url(re.compile(r"/$"))
    return username


def open_trade(page: Any, symbol: str = "AAPL") -> None:
    page.goto(f"/trade/{symbol}/")
    expect(page.locator("#bids tr.level").first).to_be_visible()  # the market maker's quotes
    expect(page.locator("#asks tr.level").first).to_be_visible()


def best(page: Any, side: str) -> Decimal:
    rows = page.locator(f"#{side} tr.level")
    row = rows.first if side == "bids" else rows.last  # asks are listed highest first
    return Decimal(row.get_attribute("data-price"))


def place(page: Any, *, side: str = "buy", type_: str = "limit", quantity: str,
          price: str | None = None) -> None:
    page.locator(f'.side-toggle input[value="{side}"]').check()
    page.locator("#f-type").select_option(type_)
    if price is not None:
        page.locator("#f-price").fill(price)
    page.locator("#f-qty").fill(quantity)
    page.locator("#submit").click()


def order_id(page: Any) -> str:
    text = page.locator("#outcome").inner_text()
    found = re.search(r"order #(\d+)", text)
    assert found, text
    return found.group(1)


def no_problems(problems: PageProblems, *allowed: str) -> None:
    assert problems.unexpected(*allowed) == []


def test_markets_page_is_public_and_live(new_page: Any, problems: PageProblems) -> None:
    page = new_page()
    response = page.goto("/")
    assert response is not None and response.status == 200
    rows = page.locator("#markets tbody tr[data-symbol]")
    expect(rows).to_have_count(4)
    quote = page.locator('tr[data-symbol="AAPL"] [data-field="quote"]')
    expect(quote).to_have_text(re.compile(r"\d+\.\d\d / \d+"))
    # trading needs a login: the login page, never a 401
    page.locator('tr[data-symbol="AAPL"] a.symbol').click()
    page.wait_for_url("**/accounts/login/?next=/trade/AAPL/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator(".form-error")).to_contain_text("correct username and password")
    no_problems(problems)


def test_a_limit_order_rests_is_amended_and_canceled(new_page: Any, problems: PageProblems) -> None:
    page = new_page()
    sign_up(page, "rester")
    open_trade(page)
    price = best(page, "bids") - Decimal("1.00")  # below the market maker's bids: it rests
    place(page, quantity="7", price=str(price))
    expect(page.locator("#outcome")).to_contain_text(f"Resting: buy 7 AAPL at {price}")
    oid = order_id(page)
    mine = page.locator(f'#orders tr[data-order-id="{oid}"]')
    expect(mine).to_contain_text("resting")
    expect(mine.locator('[data-field="price"]')).to_have_text(str(price))
    expect(page.locator(f'#bids tr.level.own[data-price="{price}"]')).to_be_visible()  # in the ladder, marked

    new_price = price - Decimal("0.05")
    mine.get_by_role("button", name=f"Amend order {oid}").click()
    page.get_by_label(f"New price for order {oid}").fill(str(new_price))
    page.get_by_label(f"New quantity for order {oid}").fill("9")
    mine.get_by_role("button", name="Save").click()
    expect(page.locator("#outcome")).to_contain_text(f"Amended #{oid}: price {new_price}, quantity 9")
    expect(mine.locator('[data-field="price"]')).to_have_text(str(new_price))
    expect(mine.locator('[data-field="quantity"]')).to_have_text("9")
    expect(page.locator(f'#bids tr.level.own[data-price="{new_price}"]')).to_be_visible()
    expect(page.locator(f'#bids tr.level[data-price="{price}"].own')).to_have_count(0)

    mine.get_by_role("button", name=f"Cancel order {oid}").click()
    expect(page.locator("#outcome")).to_contain_text(f"Canceled #{oid} (9 canceled)")
    expect(mine).to_have_count(0)
    expect(page.locator("#bids tr.level.own")).to_have_count(0)
    no_problems(problems)


def test_crossing_the_quote_fills_and_updates_everything(new_page: Any, problems: PageProblems) -> None:
    page = new_page()
    sign_up(page, "taker")
    open_trade(page)
    expect(page.locator("#available")).to_have_text("1,000,000.00")
    # the keyboard: Tab to the best offer, Enter puts its price on the ticket
    ask = page.locator("#asks tr.level").last.locator("button.price")
    ask.focus()
    page.keyboard.press("Enter")
    price = page.locator("#f-price").input_value()
    assert re.fullmatch(r"\d+\.\d\d", price), price
    expect(page.locator("#f-qty")).to_be_focused()
    page.keyboard.type("3")
    page.locator("#f-tif").select_option("ioc")  # whatever is left after the quote moved is canceled
    page.locator("#submit").click()
    outcome = page.locator("#outcome")
    expect(outcome).to_contain_text(re.compile(r"Filled: bought 3 AAPL at|Partially filled|Not filled"))
    if "Filled: bought 3" not in outcome.inner_text():  # the market maker moved its quote first: take it
        place(page, type_="market", quantity="3")
        expect(outcome).to_contain_text("Filled: bought 3 AAPL at")
    found = re.search(r"at (\d+\.\d\d)", outcome.inner_text())
    assert found is not None
    fill_price = found.group(1)

    expect(page.locator("#tape tr").filter(has_text=fill_price).first).to_be_visible()  # the tape
    page.get_by_role("tab", name="Fills").click()
    expect(page.locator("#fills tbody tr").first).to_contain_text(fill_price)
    expect(page.locator("#fills tbody tr").first).to_contain_text("taker")
    page.get_by_role("tab", name="Positions").click()
    position = page.locator('#positions tr[data-symbol="AAPL"]')
    expect(position.locator("td").first).to_have_text("3")
    expect(page.locator("#available")).not_to_have_text("1,000,000.00")  # cash paid
    expect(page.locator("#t-last")).not_to_have_text("—")
    no_problems(problems)


def test_refusals_show_their_reason(new_page: Any, problems: PageProblems) -> None:
    page = new_page()
    sign_up(page, "refused")
    open_trade(page)
    # checked in the page, before anything is sent
    requests: list[str] = []

    def sent(request: Any) -> None:
        if "/api/submit" in request.url:
            requests.append(request.url)

    page.on("request", sent)
    place(page, quantity="2", price="150.005")
    expect(page.locator("#e-price")).to_have_text("Must be a positive multiple of the tick size 0.01.")
    expect(page.locator("#f-price")).to_have_attribute("aria-invalid", "true")
    page.locator("#f-type").select_option("market")
    page.locator("#f-tif").select_option("day")
    page.locator("#submit").click()
    expect(page.locator("#e-time_in_force")).to_contain_text("does not rest")
    assert requests == []
    # refused by the exchange (422): a buy beyond the cash first (the funds are held before the
    # symbol's checks), then a sell larger than the instrument's largest order
    page.locator("#f-tif").select_option("gtc")
    place(page, quantity="100000", price=str(best(page, "bids")))
    expect(page.locator("#outcome")).to_have_text(
        "Rejected: not enough available cash (cash minus what open orders reserve).")
    place(page, side="sell", quantity="100000", price=str(best(page, "asks")))
    expect(page.locator("#outcome")).to_have_text(
        "Rejected: the order is larger than the largest order allowed in AAPL: at most 1000.")
    expect(page.locator("#orders tbody tr")).to_have_count(0)
    no_problems(problems, "422")


def test_another_users_orders_never_show_as_mine(new_page: Any, problems: PageProblems) -> None:
    alice, bob = new_page(), new_page()
    sign_up(alice, "alice")
    sign_up(bob, "bob")
    open_trade(alice)
    open_trade(bob)
    price = best(bob, "bids") - Decimal("1.50")
    place(bob, quantity="4", price=str(price))
    expect(bob.locator("#outcome")).to_contain_text("Resting")
    bobs = order_id(bob)
    expect(bob.locator(f'#orders tr[data-order-id="{bobs}"]')).to_be_visible()
    # alice sees bob's order in the book (as anyone's size), never as hers
    expect(alice.locator(f'#bids tr.level[data-price="{price}"]')).to_be_visible()
    expect(alice.locator(f'#bids tr.level[data-price="{price}"]')).not_to_have_class(re.compile(r"\bown\b"))
    expect(alice.locator("#orders tbody tr")).to_have_count(0)
    expect(alice.locator("#orders-empty")).to_be_visible()
    bob.get_by_role("button", name=f"Cancel order {bobs}").click()
    expect(bob.locator("#outcome")).to_contain_text(f"Canceled #{bobs}")

    # bob's fills reach bob's other tab live (his private feed), never alice's page
    bob_tab = bob.context.new_page()
    problems.watch(bob_tab)
    open_trade(bob_tab)
    expect(bob_tab.locator("#feed-state")).to_have_text("live")
    place(bob, type_="market", quantity="1")
    expect(bob.locator("#outcome")).to_contain_text("Filled: bought 1 AAPL")
    taken = order_id(bob)
    toast = bob_tab.locator("#toasts .toast")
    expect(toast).to_contain_text(f"Your buy order #{taken} filled: 1 AAPL at")
    expect(bob.locator("#toasts .toast")).to_have_count(0)  # told under the ticket instead
    expect(alice.locator("#toasts .toast")).to_have_count(0)
    expect(alice.locator("#fills tbody tr")).to_have_count(0)
    no_problems(problems)


def test_banner_when_the_socket_is_cut_and_polling_goes_on(new_page: Any, problems: PageProblems) -> None:
    page = new_page()
    sign_up(page, "cut")
    cut = {"on": False}
    sockets: list[Any] = []

    def route(ws: Any) -> None:
        if cut["on"]:
            ws.close()  # the server is "down": refused at once
            return
        ws.connect_to_server()  # passed through untouched
        sockets.append(ws)

    page.route_web_socket(re.compile(r"/ws$"), route)
    open_trade(page)
    expect(page.locator("#feed-state")).to_have_text("live")
    expect(page.locator("#feed-banner")).to_be_hidden()

    cut["on"] = True
    for ws in sockets:
        ws.close()
    banner = page.locator("#feed-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("updating by polling")
    expect(page.locator("#feed-state")).to_have_text("polling")
    # polling keeps the page current: the market maker requotes, the book's seq moves on ...
    seq = page.locator("#book-seq").inner_text()
    expect(page.locator("#book-seq")).not_to_have_text(seq)
    # ... and an order placed now shows in the book and in my orders
    price = best(page, "bids") - Decimal("2.00")
    place(page, quantity="1", price=str(price))
    expect(page.locator("#outcome")).to_contain_text("Resting")
    expect(page.locator(f'#bids tr.level.own[data-price="{price}"]')).to_be_visible()

    cut["on"] = False  # the server is back: the page reconnects by itself
    expect(page.locator("#feed-state")).to_have_text("live", timeout=30_000)
    expect(banner).to_be_hidden()
    no_problems(problems, "WebSocket")


def test_a_sequence_gap_resyncs_the_book(new_page: Any, problems: PageProblems) -> None:
    """One level2 update lost on the way: the next one's prev_seq does not match, and the page takes the
    book again (REST at once, and a fresh snapshot from the feed) instead of showing a wrong book."""
    page = new_page()
    sign_up(page, "gap")
    dropped: list[str] = []
    resubscribed: list[str] = []

    def route(ws: Any) -> None:
        server = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and '"level2_update"' in message and not dropped:
                dropped.append(message)  # lost
                return
            ws.send(message)

        def from_page(message: str | bytes) -> None:
            if dropped and isinstance(message, str) and '"unsubscribe"' in message and "level2" in message:
                resubscribed.append(message)
            server.send(message)

        server.on_message(from_server)
        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"/ws$"), route)
    with page.expect_request(lambda request: "/api/book/AAPL" in request.url and bool(dropped),
                             timeout=30_000):
        open_trade(page)
        expect(page.locator("#feed-state")).to_have_text("live")
    assert len(dropped) == 1
    seq = page.locator("#book-seq").inner_text()
    expect(page.locator("#book-seq")).not_to_have_text(seq)  # and goes on updating
    assert resubscribed, "the page did not resubscribe to level2 after the gap"
    no_problems(problems)


def test_held_and_halted_orders_say_so(new_page: Any, problems: PageProblems) -> None:
    """Staff change GOOGL's hold rule (the admin form shows decimals as people write them) and halt MSFT;
    a trader's orders then come back held for review, and rejected with the halt as the reason."""
    admin = new_page()
    log_in(admin, "admin", "admin", "/admin/risk/risklimit/")
    admin.locator("#result_list a").filter(has_text="GOOGL").click()
    volume = admin.locator("#id_reference_daily_volume")
    expect(volume).to_have_value("100000")  # not 100000.00000000
    volume.fill("1000")  # orders above 5% of 1,000 wait for review
    admin.locator('input[name="_save"]').click()
    expect(admin.locator(".messagelist")).to_contain_text("was changed successfully")
    admin.goto("/admin/exchange/instrument/")
    admin.locator("#result_list tr").filter(has_text="MSFT").locator("input.action-select").check()
    admin.locator('select[name="action"]').select_option("halt")
    admin.locator('button[name="index"]').click()
    expect(admin.locator(".messagelist")).to_contain_text("Halt sent to the matcher for MSFT")

    page = new_page()
    sign_up(page, "held")
    open_trade(page, "GOOGL")
    place(page, quantity="100", price=str(best(page, "bids") - Decimal("1.00")))
    expect(page.locator("#outcome")).to_contain_text("Held for review: staff will release or reject")
    expect(page.locator(f'#orders tr[data-order-id="{order_id(page)}"]')).to_contain_text("held for review")

    open_trade(page, "MSFT")
    expect(page.locator("#t-status")).to_have_text("Halted")
    place(page, quantity="1", price=str(best(page, "bids")))
    expect(page.locator("#outcome")).to_have_text(
        "Rejected: trading in this instrument is halted; cancels are still accepted.")
    no_problems(problems, "422")


def test_phone_width(new_page: Any, problems: PageProblems) -> None:
    page = new_page(width=390, height=844, is_mobile=True, has_touch=True, device_scale_factor=2)
    sign_up(page, "phone")
    open_trade(page)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page is {width}px wide at a 390px viewport"
    ticket = page.locator("#ticket")
    expect(ticket).to_be_in_viewport()  # the ticket comes first on a phone
    place(page, quantity="1", price=str(best(page, "bids") - Decimal("3.00")))
    expect(page.locator("#outcome")).to_contain_text("Resting")
    expect(page.locator("#orders tbody tr")).to_have_count(1)
    screenshot(page, "trading-phone")
    no_problems(problems)


def test_screenshots(new_page: Any, problems: PageProblems) -> None:
    """docs/screenshots/ for the README: markets, the trading screen, the system page, the admin."""
    page = new_page()
    sign_up(page, "shot")
    open_trade(page)
    below = best(page, "bids")
    for step, quantity in (("0.40", "5"), ("0.85", "12")):
        place(page, quantity=quantity, price=str(below - Decimal(step)))
        expect(page.locator("#outcome")).to_contain_text("Resting")
    place(page, type_="market", quantity="2")
    expect(page.locator("#outcome")).to_contain_text("Filled")
    expect(page.locator("#tape tr").first).to_be_visible()
    page.locator("#f-type").select_option("limit")
    page.locator("#asks tr.level").last.locator("button.price").click()  # a price from the ladder
    page.locator("#f-qty").fill("10")
    expect(page.locator("#estimate")).to_contain_text("Order value")
    screenshot(page, "trading")

    admin = new_page()
    log_in(admin, "admin", "admin", "/system/")
    expect(admin.locator("#chart-throughput polyline").first).to_be_attached()
    expect(admin.locator("#chart-ack")).to_have_attribute("data-samples", "5")  # five seconds of figures
    expect(admin.locator("#stages tbody tr").first).to_be_visible()
    screenshot(admin, "system")
    admin.goto("/admin/matching/order/?market_maker=hide")
    expect(admin.locator("#result_list")).to_be_visible()
    expect(admin.locator("#result_list")).not_to_contain_text("marketmaker")
    screenshot(admin, "admin-orders")

    # a halted market, halted by staff in the admin, shown plainly on the markets page
    admin.goto("/admin/exchange/instrument/")
    admin.locator("#result_list tr").filter(has_text="TSLA").locator("input.action-select").check()
    admin.locator('select[name="action"]').select_option("halt")
    admin.locator('button[name="index"]').click()  # the actions' "Go"
    expect(admin.locator(".messagelist")).to_contain_text("Halt sent to the matcher for TSLA")
    page = new_page()
    page.goto("/")
    expect(page.locator('tr[data-symbol="AAPL"] [data-field="last"]')).to_have_text(re.compile(r"\d"))
    expect(page.locator('tr[data-symbol="TSLA"]')).to_contain_text("Halted")
    expect(page.locator('tr[data-symbol="AAPL"] .status')).to_have_text("Open")
    screenshot(page, "markets")

    no_problems(problems)
