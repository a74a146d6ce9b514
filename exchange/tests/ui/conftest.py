"""The browser tests' fixtures: one live exchange for the whole session (exchange/tests/live_server.py)
and Debian's chromium driven by Playwright (no browser download). Without chromium or Playwright the
browser tests skip, loudly; the live server itself needs neither.

Nothing here uses pytest-django's test database: the live server has its own.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from exchange.tests.live_server import LiveExchange, live_exchange

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# generous rates: one test user drives several pages that poll while the socket is down
TEST_ENV = {"API_RATES": "submit=50/s,burst=1000/s,sustained=100000/min", "MARKET_MAKER_INTERVAL": "0.5",
            "MATCHER_FSYNC": "false", "LOGIN_FAILURES": "1000/min"}


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    return path if Path(path).exists() else shutil.which("chromium")


@pytest.fixture(scope="package")  # one server for the browser tests, stopped after them
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveExchange]:
    """The embedded exchange with the demo market maker, on a free port, for the browser tests."""
    with live_exchange(tmp_path_factory.mktemp("live-exchange"), extra_env=TEST_ENV) as server:
        yield server


@pytest.fixture(scope="package")  # closed after the browser tests: while Playwright's sync API is open it
def browser() -> Iterator[Any]:  # runs an event loop in this thread, so later asyncio.run() would fail
    executable = chromium_path()
    if executable is None:
        pytest.skip("!!! CHROMIUM NOT INSTALLED (/usr/bin/chromium): the browser tests did NOT run; "
                    "scripts/test.sh installs it with apt-get when run as root !!!")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("!!! PLAYWRIGHT NOT INSTALLED (requirements-dev.txt): the browser tests did NOT run !!!")
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh, temporary user-data dir of its own (deleted at close)
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageProblems:
    """Console errors, uncaught exceptions and failed or 404 requests a page had: tests assert none."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.items.append(f"exception: {error}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.items.append(f"console: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status == 404:
            self.items.append(f"404: {response.url}")

    def unexpected(self, *allowed: str) -> list[str]:
        return [item for item in self.items if not any(text in item for text in allowed)]


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


@pytest.fixture
def new_page(browser: Any, live: LiveExchange, problems: PageProblems) -> Iterator[Any]:
    """new_page(width=1366, height=900): a page in a context of its own (its own cookies)."""
    contexts: list[Any] = []

    def make(width: int = 1440, height: int = 900, **options: Any) -> Any:
        context = browser.new_context(viewport={"width": width, "height": height}, base_url=live.base_url,
                                      **options)
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        problems.watch(page)
        return page

    yield make
    for context in contexts:
        context.close()


def log_in(page: Any, username: str, password: str, next_path: str = "/") -> None:
    page.goto(f"/accounts/login/?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
