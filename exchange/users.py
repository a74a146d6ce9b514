"""The signed-in user of a request, typed as the user model."""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from rest_framework.request import Request


def signed_in_user(request: HttpRequest | Request) -> User:
    """The user of a request that only signed-in users reach (the API's IsAuthenticated, the admin's
    staff check): `request.user` is typed `User | AnonymousUser`, this is the `User`. Refuses (403)
    an anonymous request, should a view's permission check ever let one through."""
    user = request.user
    if isinstance(user, AnonymousUser):
        raise PermissionDenied("sign in first")
    return user
