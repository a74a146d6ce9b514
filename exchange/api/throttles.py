"""The API's rate limits: DRF throttles over `exchange.api.rate_limits` (atomic, shared through Redis in
production), per caller (the user; the client address for anonymous calls).

Two separate budgets per caller, so neither can use up the other:
- order entry: the unsafe methods (POST, PATCH, DELETE) of views that declare `throttle_scope = "submit"`
  (submit, cancel, amend, cancel-all, batch): `submit` (10 orders a second), within their own
  `burst` and `sustained` call limits (100 a second, 1,000 a minute);
- every other call (reads, and writes that change no order): `burst` and `sustained` of its own.
A GET never spends the order budget. A request is counted in all its budgets at once or in none: a
refused request costs nothing, so a client hammering into 429s is let in again as soon as the window
has room. Rates: REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (API_RATES), read at each request.

A view that carries several orders a request (POST /api/orders/batch) also sets
`throttle_per_order = True`: the request then only needs some order budget left, and the view takes
one token per order with `take_order_tokens`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from exchange.api.authentication import THROTTLED, client_address, login_wait
from exchange.api.rate_limits import Take, limiter, parse_rate

if TYPE_CHECKING:  # DRF imports this module while its views module loads
    from rest_framework.request import Request
    from rest_framework.views import APIView

ORDER_SCOPE = "submit"


def caller(request: Request, throttle: BaseThrottle) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return user_ident(user.pk)
    return f"addr:{throttle.get_ident(request)}"


def order_entry(request: Request, view: APIView) -> bool:
    return request.method not in SAFE_METHODS and getattr(view, "throttle_scope", None) == ORDER_SCOPE


def order_budget(ident: str, cost: int) -> Take | None:
    """The caller's order budget (None: unlimited)."""
    rate = api_settings.DEFAULT_THROTTLE_RATES.get(ORDER_SCOPE)
    return None if rate is None else Take(f"{ORDER_SCOPE}:{ident}", parse_rate(rate), cost)


def take_call(ident: str, *, orders: bool, order_cost: int = 1) -> float:
    """Take one call's budgets for the caller `ident` at once (see the module's docstring): its call
    limits, and for order entry `order_cost` tokens of its order budget. Seconds to wait (0.0: taken).
    Every way in takes them here: DRF's views through ApiThrottle, the WebSocket's order entry directly."""
    rates = api_settings.DEFAULT_THROTTLE_RATES
    family = "orders" if orders else "calls"
    takes = [Take(f"{scope}:{family}:{ident}", parse_rate(rates[scope]))
             for scope in ("burst", "sustained") if rates.get(scope) is not None]
    if orders:
        budget = order_budget(ident, order_cost)
        takes += [budget] if budget is not None else []
    return limiter().take_all(takes)


def user_ident(user_id: int) -> str:
    """A signed-in caller's identity in the rate limits, however it came in."""
    return f"user:{user_id}"


class ApiThrottle(BaseThrottle):
    """Every API call's budgets (see the module's docstring), taken in one atomic step."""

    seconds = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        # a per-order view takes its orders' tokens itself: here only some must be left
        cost = 0 if getattr(view, "throttle_per_order", False) else 1
        self.seconds = take_call(caller(request, self), orders=order_entry(request, view), order_cost=cost)
        return self.seconds == 0.0

    def wait(self) -> float | None:
        return self.seconds or None


def take_order_tokens(request: Request, wanted: int) -> tuple[int, float]:
    """For a request that carries several orders (its view sets `throttle_per_order`, so ApiThrottle
    only checked that some order budget is left): take up to `wanted` tokens of the caller's order
    budget now, one per order. (granted, seconds until the next token frees up: 0.0 if some are left.)"""
    budget = order_budget(caller(request, ApiThrottle()), wanted)
    if wanted <= 0 or budget is None:
        return max(wanted, 0), 0.0
    return limiter().take_up_to(budget)


class LoginThrottle(BaseThrottle):
    """POST /api/token: 429 with Retry-After once the username or the client address is past its
    failed-login budget (exchange.api.authentication), before the password is checked."""

    seconds = 0.0

    def allow_request(self, request: Request, view: APIView) -> bool:
        data = request.data
        username = data.get("username") if isinstance(data, Mapping) else None
        if username is None:
            return True  # nothing to check: the serializer refuses it
        self.seconds = login_wait(str(username), client_address(request))
        if self.seconds > 0:  # refused here, to say why (DRF's own refusal says only "throttled")
            raise exceptions.Throttled(self.seconds, detail=f"{THROTTLED}.")
        return True

    def wait(self) -> float | None:
        return self.seconds or None
