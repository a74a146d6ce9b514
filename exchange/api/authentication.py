"""DRF's TokenAuthentication with the token -> user lookup cached in process memory
(`exchange.api.lookups`: a deleted token or a deactivated user is refused at once in this process)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from exchange.api import lookups


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str) -> tuple:
        token = lookups.token_get(key)
        return checked(token)


def checked(token: object) -> tuple:
    """(user, token) as TokenAuthentication answers, or its AuthenticationFailed."""
    if token is None:
        raise exceptions.AuthenticationFailed(_("Invalid token."))
    if not token.user.is_active:
        raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
    return token.user, token
