"""WebSocket consumers: `/ws` (MarketConsumer, the protocol of docs/WEBSOCKET.md) and a refusal for any
other path. Thin: parsing, subscriptions and the outbound queue are `marketdata.session`'s, the messages
`marketdata.feed`'s, order entry `exchange.api.entry`'s (shared with the REST API).

Per connection, two tasks: Channels' own (client frames and channel-layer messages, one at a time) and a
writer draining the bounded outbox into the socket, so a client that reads slowly holds up only its own
writer; its outbox conflates depth and, past the bound, the client is told `slow_consumer` and dropped.
Order requests run concurrently (up to `MAX_ORDERS_IN_FLIGHT` a connection; submits batched across the
process's connections, `marketdata.order_entry`), each answered with its request id when done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from asgiref.sync import sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer, WebsocketConsumer
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import close_old_connections
from django.db.models.signals import post_delete, post_save
from rest_framework.authtoken.models import Token

from exchange.env import Mode
from marketdata import order_entry, publisher
from marketdata.auth import (
    account_group,
    on_logged_out,
    on_token_deleted,
    on_user_saved,
    session_group,
    token_group,
    user_for_token,
)
from marketdata.feed import PUBLIC_FEEDS, Level2, candle_message, ticker_message
from marketdata.hub import HUB
from marketdata.publisher import md_group, user_group
from marketdata.session import (
    ORDER_ACTIONS,
    OUTBOX_LIMIT,
    ClientState,
    ProtocolError,
    SlowConsumer,
    error,
    feed_request,
    parse,
)
from matching import services

log = logging.getLogger("marketdata.consumers")

MAX_ORDERS_IN_FLIGHT = 64  # per connection; more waiting is refused with "too_many_requests"
SLOW_CLOSE_TIMEOUT = 2.0  # seconds to tell a slow consumer before the connection is cut

user_logged_out.connect(on_logged_out, dispatch_uid="marketdata-ws-logout")
post_delete.connect(on_token_deleted, sender=Token, dispatch_uid="marketdata-ws-token-deleted")
post_save.connect(on_user_saved, sender=get_user_model(), dispatch_uid="marketdata-ws-user-saved")


def _public_snapshot(symbol: str, interval_set: set[str]) -> tuple[Any, Any, dict[str, Any]] | None:
    """(instrument, snapshot, {interval: last candle}) of a symbol, or None if there is no such
    instrument (synchronous: the instrument lookup; production reads Redis)."""
    from exchange.api.lookups import instrument_get

    close_old_connections()
    instrument = instrument_get(symbol)
    if instrument is None:
        return None
    market = services.market_data()
    candles = {}
    for interval in interval_set:
        last = market.candles(symbol, interval, 1)
        if last:
            candles[interval] = last[-1]
    return instrument, market.snapshot(symbol), candles


class MarketConsumer(AsyncWebsocketConsumer):
    """`/ws`: public feeds for anyone, the private feed and order entry for a signed-in user."""

    outbox_limit = OUTBOX_LIMIT  # texts queued for the client before it is dropped (a subclass may change it)

    async def connect(self) -> None:
        if settings.EXCHANGE_MODE == Mode.EMBEDDED:  # without a lifespan (daphne, tests): start it all here
            await sync_to_async(services.command_bus, thread_sensitive=False)()
            publisher.ensure_running()  # the embedded publisher's loop, in this (the server's) event loop
        self.state = ClientState(self.outbox_limit)
        self.idle: asyncio.Future[None] | None = None  # the writer's, while it waits for the outbox
        self.orders_in_flight: set[asyncio.Task] = set()
        self.closing = self.slow = False
        user = self.scope.get("user")
        self.user: Any = user if user is not None and user.is_authenticated else None  # a User, or None
        self.credential_group: str | None = None  # the session's or the token's (auth.py)
        self.account_group: str | None = None
        await self.accept()
        self.writer = asyncio.create_task(self._write())
        if self.user is not None:
            token = self.scope.get("token_group")
            await self._join_credential_groups(token if isinstance(token, str) else None)
        if self.scope.get("auth_error"):
            self._queue(error("authentication_failed", "the token in the Authorization header is not valid"))

    async def disconnect(self, code: int) -> None:
        self.writer.cancel()
        for task in self.orders_in_flight:
            task.cancel()
        await self._leave_groups()

    async def _leave_groups(self) -> None:
        layer = self.channel_layer
        for symbol in list(self.state.symbols):
            await HUB.leave(md_group(symbol), self._deliver_md)
        self.state.symbols.clear()
        if self.state.orders and self.user is not None:
            await layer.group_discard(user_group(self.user.pk), self.channel_name)
            self.state.orders = False
        await self._leave_credential_groups()

    async def _join_credential_groups(self, token: str | None) -> None:
        """Ending the credentials this socket signed in with ends its private access: logging out of
        its session (auth.on_logged_out), deleting its token, deactivating its user."""
        assert self.user is not None
        if token is None:
            key = getattr(self.scope.get("session"), "session_key", None)
            token = session_group(key) if key else None
        self.credential_group = token
        self.account_group = account_group(self.user.pk)
        for group in (self.credential_group, self.account_group):
            if group is not None:
                await self.channel_layer.group_add(group, self.channel_name)

    async def _leave_credential_groups(self) -> None:
        for group in (self.credential_group, self.account_group):
            if group is not None:
                await self.channel_layer.group_discard(group, self.channel_name)
        self.credential_group = self.account_group = None

    # ---- client frames ------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        request: dict[str, Any] = {}
        try:
            request = parse(text_data, bytes_data)
            action = request["action"]
            if action == "ping":
                self._queue({"type": "pong", "id": request.get("id")})
            elif action == "subscribe":
                await self._subscribe(request)
            elif action == "unsubscribe":
                await self._unsubscribe(request)
            elif action == "auth":
                await self._auth(request)
            elif action in ORDER_ACTIONS:
                self._order(action, request)
        except ProtocolError as refused:
            self._queue(refused.reply())
        except SlowConsumer:
            await self._drop_slow()

    async def _subscribe(self, request: dict[str, Any]) -> None:
        wanted = feed_request(request)
        request_id = request.get("id")
        if "orders" in wanted.feeds:
            if self.user is None:
                raise ProtocolError("authentication_required",
                                    "sign in (session or token) for the orders feed", request_id)
            if not self.state.orders:
                await self.channel_layer.group_add(user_group(self.user.pk), self.channel_name)
                self.state.orders = True
        public = wanted.feeds & PUBLIC_FEEDS
        symbol = wanted.symbol
        if public and symbol is not None:
            intervals = {wanted.interval} if "candles" in public else set()
            # join first, then read the snapshot: publications meanwhile are held (ClientState.expect),
            # then those newer than the snapshot are queued, older ones skipped
            self.state.expect(symbol)
            try:
                if symbol not in self.state.symbols:
                    await HUB.join(md_group(symbol), self._deliver_md)
                found = await sync_to_async(_public_snapshot, thread_sensitive=False)(symbol, intervals)
                if found is None:
                    if symbol not in self.state.symbols:
                        await HUB.leave(md_group(symbol), self._deliver_md)
                    raise ProtocolError("unknown_symbol", f"no instrument {symbol!r}", request_id)
                units, snap, candles = found
                self.state.subscribe(symbol, public, wanted.interval, snap.seq)
            except BaseException:
                self.state.settle(symbol)
                raise
        self._queue({"type": "subscribed", "symbol": symbol, "feed_types": sorted(wanted.feeds),
                     **({"interval": wanted.interval} if "candles" in wanted.feeds else {}),
                     **({"id": request_id} if request_id is not None else {})})
        if public and symbol is not None:
            if "level2" in public:
                self._queue(Level2.of(units, snap, 0).message(snapshot=True))
            if "ticker" in public:
                self._queue(ticker_message(units, snap.ticker))
            for interval, candle in candles.items():
                self._queue(candle_message(units, interval, candle))
            self.state.settle(symbol)  # after the snapshot: what was published meanwhile
            self.wake()

    async def _unsubscribe(self, request: dict[str, Any]) -> None:
        wanted = feed_request(request)
        if "orders" in wanted.feeds and self.state.orders and self.user is not None:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
            self.state.orders = False
        symbol = wanted.symbol
        public = wanted.feeds & PUBLIC_FEEDS
        if public and symbol is not None:
            interval = wanted.interval if "candles" in public and "interval" in request else None
            if self.state.unsubscribe(symbol, public, interval):
                await HUB.leave(md_group(symbol), self._deliver_md)
        request_id = request.get("id")
        self._queue({"type": "unsubscribed", "symbol": symbol, "feed_types": sorted(wanted.feeds),
                     **({"id": request_id} if request_id is not None else {})})

    async def _auth(self, request: dict[str, Any]) -> None:
        token, request_id = request.get("token"), request.get("id")
        if not isinstance(token, str) or not token or len(token) > 128:
            raise ProtocolError("invalid_message", "auth needs a token (POST /api/token gives one)",
                                request_id)
        user = await sync_to_async(user_for_token, thread_sensitive=False)(token)
        if user is None:
            raise ProtocolError("authentication_failed", "invalid token", request_id)
        if self.user is not None and self.user.pk != user.pk and self.state.orders:
            await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
            self.state.orders = False
        await self._leave_credential_groups()  # the token, not the session, authenticates this socket now
        self.user = user
        await self._join_credential_groups(token_group(token))
        self._queue({"type": "authenticated", "username": user.get_username(),
                     **({"id": request_id} if request_id is not None else {})})

    def _order(self, action: str, request: dict[str, Any]) -> None:
        request_id = request.get("id")
        if self.user is None:
            raise ProtocolError("authentication_required", "sign in (session or token) to enter orders",
                                request_id)
        if len(self.orders_in_flight) >= MAX_ORDERS_IN_FLIGHT:
            raise ProtocolError("too_many_requests", f"at most {MAX_ORDERS_IN_FLIGHT} order requests may "
                                "wait for their answers on one connection", request_id)
        task = asyncio.create_task(self._order_task(action, request, self.user))
        self.orders_in_flight.add(task)
        task.add_done_callback(self.orders_in_flight.discard)

    async def _order_task(self, action: str, request: dict[str, Any], user: Any) -> None:
        try:
            status, body = await order_entry.call(action, user, request)
        except Exception:  # not a refusal: a bug or an outage; the client gets a code, never silence
            log.exception("order request failed")
            status, body = 500, {"code": "server_error", "message": "the request failed on the server"}
        try:
            self._queue({"type": "order.result", "id": request.get("id"), "status": status, "result": body})
        except SlowConsumer:
            with contextlib.suppress(StopConsumer):  # not the consumer's task: _drop_slow's close ends it
                await self._drop_slow()

    # ---- publications (publisher.Publisher via hub.HUB; auth.on_logged_out) -------------------------

    def _deliver_md(self, message: dict[str, Any]) -> None:
        """A symbol's publication, from this process's relay (hub.py): a plain call, never blocks."""
        if self.closing or self.slow:
            return
        try:
            self.state.on_md_update(message)
        except SlowConsumer:  # dropped in the consumer's own task, where it can end the connection
            self.slow = True
            self.slow_notice = asyncio.ensure_future(self.channel_layer.send(self.channel_name,
                                                                             {"type": "md.slow"}))
            return
        self.wake()

    async def md_slow(self, message: dict[str, Any]) -> None:
        await self._drop_slow()

    async def user_updates(self, message: dict[str, Any]) -> None:
        try:
            self.state.on_user_updates(message)
        except SlowConsumer:
            await self._drop_slow()
        self.wake()

    async def session_ended(self, message: dict[str, Any]) -> None:
        """The credentials of this socket ended (logged out, token deleted, user deactivated): no more
        private data, no more order entry."""
        if self.user is not None:
            if self.state.orders:
                await self.channel_layer.group_discard(user_group(self.user.pk), self.channel_name)
                self.state.orders = False
                self._queue({"type": "unsubscribed", "symbol": None, "feed_types": ["orders"],
                             "reason": message.get("reason", "logged_out")})
            await self._leave_credential_groups()
            self.user = None

    # ---- the writer ---------------------------------------------------------------------------------

    def _queue(self, message: dict[str, Any]) -> None:
        self.state.send(message)  # raises SlowConsumer past the bound
        self.wake()

    def wake(self) -> None:
        """The writer, if it waits: something is in the outbox. A bare future rather than an
        asyncio.Event: a publication wakes every connection's writer, and the fan-out to 1,000 sockets
        spent a tenth of its time in Event's bookkeeping (docs/PERFORMANCE.md)."""
        idle = self.idle
        if idle is not None:
            self.idle = None
            if not idle.done():
                idle.set_result(None)

    async def _write(self) -> None:
        outbox, state = self.state.outbox, self.state
        loop = asyncio.get_running_loop()
        while True:
            while not outbox:
                self.idle = loop.create_future()
                await self.idle
            key, value = outbox.pop()
            text = state.render(key, value)
            if text is not None:
                await self.send(text_data=text)
                if outbox:  # round robin: the other connections' first frames (a publication's trades,
                    await asyncio.sleep(0)  # for all) before this one's next (its depth)

    async def _drop_slow(self) -> None:
        """Past the bound: say so (if the socket takes it in time) and close; never buffer more."""
        if self.closing:
            return
        self.closing = True
        self.writer.cancel()
        for task in self.orders_in_flight:
            if task is not asyncio.current_task():
                task.cancel()
        self.state.outbox.clear()
        await self._leave_groups()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._say_slow(), SLOW_CLOSE_TIMEOUT)
        raise StopConsumer  # ends the connection (the server closes the transport)

    async def _say_slow(self) -> None:
        from marketdata.feed import dumps

        await self.send(text_data=dumps(error("slow_consumer", "too far behind: the server's queue for this "
                                               "connection is full; reconnect and resubscribe")))
        await self.close(code=1008)


class UnknownPathConsumer(WebsocketConsumer):
    """A WebSocket handshake to a path we do not serve is refused (the client sees 403), not a 500."""

    def connect(self) -> None:
        self.close()
