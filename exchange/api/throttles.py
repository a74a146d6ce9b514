"""Rate limits per user (by IP for anonymous calls), counted in the shared cache (Redis in production)."""

from __future__ import annotations

from rest_framework.throttling import UserRateThrottle


class SubmitThrottle(UserRateThrottle):
    scope = "submit"


class BurstThrottle(UserRateThrottle):
    scope = "burst"


class SustainedThrottle(UserRateThrottle):
    scope = "sustained"
