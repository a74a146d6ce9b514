"""Rate limits per user (by IP for anonymous calls), counted in the shared cache (Redis in production)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rest_framework.throttling import UserRateThrottle

if TYPE_CHECKING:  # DRF imports this module while its views module loads
    from rest_framework.request import Request
    from rest_framework.views import APIView


class SubmitThrottle(UserRateThrottle):
    scope = "submit"


class BurstThrottle(UserRateThrottle):
    scope = "burst"


class SustainedThrottle(UserRateThrottle):
    scope = "sustained"


class OrderBudgetThrottle(SubmitThrottle):
    """The submit budget (scope "submit": the same counter as POST /api/submit) charged per order, for
    requests that carry several: as a view throttle it only checks that some budget is left (429
    otherwise, before the body is read); the view then takes one token per order with `admit`."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not self._load(request, view):
            return True
        return len(self.history) < self.num_requests

    def admit(self, request: Request, view: APIView, wanted: int) -> int:
        """Take up to `wanted` tokens now (one per order); how many were granted."""
        if wanted <= 0 or not self._load(request, view):
            return wanted
        granted = max(0, min(wanted, self.num_requests - len(self.history)))
        if granted:
            self.history[:0] = [self.now] * granted
            self.cache.set(self.key, self.history, self.duration)
        return granted

    def _load(self, request: Request, view: APIView) -> bool:
        """Read the history of the caller's key, dropping what has expired; False if not throttled."""
        if self.rate is None:
            return False
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return False
        self.history = self.cache.get(self.key, [])
        self.now = self.timer()
        while self.history and self.history[-1] <= self.now - self.duration:
            self.history.pop()
        return True
