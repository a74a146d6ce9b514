"""Who is on a WebSocket: the Django session (browsers), or an API token (programs), and the origin check.

- `websocket_auth(app)`: the session cookie (`SessionAuthMiddleware`: Channels' CookieMiddleware and
  get_user, without its SessionMiddleware's wrapper around every frame sent), then `TokenAuthMiddleware`
  (`Authorization: Token <key>`, read by the API's own TokenAuthentication, exchange/api/authentication.py:
  a deleted token or an inactive user is refused exactly as by the REST API). A client may also send
  {"action": "auth", "token": ...} as a message (browsers cannot set headers on a WebSocket):
  `user_for_token`.
- `OriginCheck`: Channels' AllowedHostsOriginValidator, except that a handshake WITHOUT an Origin header
  is let through. Browsers always send Origin, so cross-site pages are still refused (the cookie is what a
  hostile page could borrow); programs send none, and they authenticate with a token, which a page on
  another site does not have.
- Logging out ends that session's private feeds: `user_logged_out` -> group `session.<hash>` ->
  every socket of that session drops its private subscription (in every web process, via the layer).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import import_module
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.auth import get_user
from channels.layers import get_channel_layer
from channels.security.websocket import AllowedHostsOriginValidator, OriginValidator
from channels.sessions import CookieMiddleware
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import close_old_connections
from rest_framework.exceptions import AuthenticationFailed

from exchange.api.authentication import TokenAuthentication

log = logging.getLogger("marketdata.auth")


def user_for_token(key: str) -> AbstractBaseUser | None:
    """The active user of an API token, as DRF authenticates it (None: no such token, or inactive)."""
    close_old_connections()
    try:
        user, _ = TokenAuthentication().authenticate_credentials(key)
    except AuthenticationFailed:
        return None
    return user


def bearer_token(scope: dict[str, Any]) -> str | None:
    """The key of an `Authorization: Token <key>` header, if any."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            parts = value.decode("latin-1").split()
            if len(parts) == 2 and parts[0].lower() == "token":
                return parts[1]
            return ""  # some other scheme, or malformed: refused as a token would be
    return None


class TokenAuthMiddleware:
    """`Authorization: Token <key>` -> scope["user"] (and scope["auth"] = "token"); a bad token leaves
    the user as the session gave it and sets scope["auth_error"] (told to the client once connected)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = bearer_token(scope)
        if key is not None:
            scope = dict(scope)
            user = await sync_to_async(user_for_token, thread_sensitive=False)(key) if key else None
            if user is None:
                scope["auth_error"] = "invalid token"
            else:
                scope["user"], scope["auth"], scope["token_group"] = user, "token", token_group(key)
        return await self.app(scope, receive, send)


class SessionAuthMiddleware:
    """The session cookie -> scope["session"] and scope["user"] (Channels' `get_user`: the session's auth
    hash is checked as Django checks it). Channels' SessionMiddleware would also wrap `send` to save a
    changed session on each message; a socket never changes the session, and the wrapper cost about 15%
    of the server's time per frame sent in the fan-out benchmark (docs/PERFORMANCE.md)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = scope.get("cookies", {}).get(settings.SESSION_COOKIE_NAME)
        # Any: Channels' stubs type a scope as their own TypedDict
        inner: Any = dict(scope, session=import_module(settings.SESSION_ENGINE).SessionStore(key))
        inner["user"] = await get_user(inner)
        return await self.app(inner, receive, send)


def websocket_auth(app: Any) -> Any:
    return CookieMiddleware(SessionAuthMiddleware(TokenAuthMiddleware(app)))


class OriginCheck(OriginValidator):
    """Allowed hosts' origins, or no Origin header at all (see the module's docstring)."""

    def valid_origin(self, parsed_origin: Any) -> bool:
        return parsed_origin is None or super().valid_origin(parsed_origin)


def origin_check(app: Any) -> OriginCheck:
    allowed = AllowedHostsOriginValidator(app)  # the allowed-hosts list exactly as Channels derives it
    return OriginCheck(app, allowed.allowed_origins)


def session_group(session_key: str) -> str:
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def token_group(key: str) -> str:
    """The sockets a token signed in: deleting the token ends their private access."""
    return "token." + hashlib.sha256(key.encode()).hexdigest()[:40]


def account_group(user_id: int) -> str:
    """Every signed-in socket of a user: deactivating the user ends their private access."""
    return f"account.{user_id}"


def on_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    """`post_delete` of an API token (also for each row a QuerySet.delete() removes)."""
    group_send_from_thread(token_group(instance.key), {"type": "session.ended", "reason": "token_deleted"})


def on_user_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    """`post_save` of a user: once inactive, none of their sockets keeps private access. (A
    QuerySet.update() sends no signal: such a socket keeps it until it reconnects.)"""
    if not instance.is_active:
        ended = {"type": "session.ended", "reason": "user_inactive"}
        group_send_from_thread(account_group(instance.pk), ended)


def on_logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    """`user_logged_out`: tell that session's sockets (a WSGI thread: never blocks the logout long)."""
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if key:
        group_send_from_thread(session_group(key), {"type": "session.ended"})


def group_send_from_thread(group: str, message: dict[str, Any]) -> None:
    """Send to a group from synchronous code. Embedded, the in-memory layer lives in the server's event
    loop, so the send is handed to that loop; otherwise (channels-redis) sent from here."""
    from marketdata.publisher import server_loop

    layer = get_channel_layer()
    if layer is None:
        return
    loop = server_loop()
    try:
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop).result(timeout=2)
        else:
            async_to_sync(layer.group_send)(group, message)
    except Exception:  # the logout itself stands; the sockets lose their private feed at reconnect
        log.exception("could not tell %s's sockets about a logout", group)
