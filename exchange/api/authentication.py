"""Logins with a budget of failures, on every login path: per username and per client address
(REMOTE_ADDR), LOGIN_FAILURES (10 in 5 minutes by default) each, counted by `exchange.api.rate_limits`
(in Redis in production, so across every server process).

The gate is the authentication backend (`LoginThrottledBackend`, the only one in AUTHENTICATION_BACKENDS),
which every path goes through (`django.contrib.auth.authenticate`): each attempt takes one token from
both budgets atomically before the password is hashed, and a successful one gives its own tokens back,
so only failures count and a success resets nobody's count. With either budget spent, the backend
raises PermissionDenied (Django's documented "stop here") and no password is hashed.

So that each path can say why, it asks first (`login_wait`) and refuses past the budget itself:
POST /api/token (`throttles.LoginThrottle`) and basic auth (`BasicAuthentication`) answer 429 with
Retry-After in the API's error shape; the login page (`LoginView`) answers 429 with Retry-After and a
message on the form, the admin's login (`AdminLoginForm`) the message. A wrong guess past the budget
is refused for the same time whatever the password, a right one too.
"""

from __future__ import annotations

import hashlib
import math
from functools import cache
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connections, router
from django.http import HttpRequest, HttpResponse
from drf_spectacular.authentication import BasicScheme
from rest_framework import authentication, exceptions
from rest_framework.authtoken.models import Token

from exchange.api.rate_limits import Take, limiter, parse_rate
from matching.worker.bus import Unavailable

THROTTLED = "too many failed logins for this username or from this address"


def client_address(request: Any) -> str | None:
    """The client's address (REMOTE_ADDR) of a Django or DRF request, if any."""
    return None if request is None else request.META.get("REMOTE_ADDR") or None


def login_budgets(username: str, address: str | None, cost: int = 1) -> list[Take]:
    """The failed-login budgets an attempt for `username` from `address` takes from."""
    rate = parse_rate(settings.LOGIN_FAILURES)
    name = hashlib.sha256(username.strip().encode("utf-8", "surrogatepass")).hexdigest()[:32]
    budgets = [Take(f"login:user:{name}", rate, cost)]
    if address:
        budgets.append(Take(f"login:addr:{address}", rate, cost))
    return budgets


def login_wait(username: str, address: str | None) -> float:
    """Seconds until a login for `username` from `address` may be tried (0.0: now). Raises Unavailable."""
    return limiter().take_all(login_budgets(username, address, cost=0))


class LoginThrottledBackend(ModelBackend):
    """Django's ModelBackend behind the failed-login budgets (see the module's docstring)."""

    def authenticate(self, request: HttpRequest | None, username: str | None = None,
                     password: str | None = None, **kwargs: Any) -> User | None:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        budgets = login_budgets(str(username), client_address(request))
        if limiter().take_all(budgets) > 0:
            raise PermissionDenied(THROTTLED)  # authenticate() stops: no backend hashes the password
        user = super().authenticate(request, username, password, **kwargs)
        if user is not None:
            limiter().give_back(budgets)  # only failures count
        return user


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication with the same answers, its lookup one plain SQL query instead of an ORM
    query compiled on every request: compiling it was most of the API's floor (about 60% of
    an empty authenticated call's time in Django, docs/PERFORMANCE.md). Still a database read on every
    call, never a cache, so a deleted token or a deactivated user is refused at once everywhere."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        names, sql = _token_user_query()
        alias = router.db_for_read(User)
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [key])
            row = cursor.fetchone()
        if row is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        user = User.from_db(alias, names, row)  # as the ORM builds a model from a row
        if not user.is_active:
            raise exceptions.AuthenticationFailed("User inactive or deleted.")
        return user, Token(key=key, user=user)


@cache
def _token_user_query() -> tuple[list[str], str]:
    """The user's field names, and the SQL that reads them for a token key (tables and columns by
    their own names, from the Options API)."""
    users, tokens = User._meta, Token._meta
    fields = users.concrete_fields
    columns = ", ".join(f"u.{field.column}" for field in fields)
    return [field.attname for field in fields], (
        f"SELECT {columns} FROM {users.db_table} u JOIN {tokens.db_table} t "
        f"ON t.{tokens.get_field('user').column} = u.{users.pk.column} WHERE t.{tokens.pk.column} = %s")


class BasicAuthentication(authentication.BasicAuthentication):
    """DRF's basic auth, answering 429 with Retry-After past the failed-login budget."""

    def authenticate_credentials(self, userid: str, password: str, request: Any = None) -> tuple:
        wait = login_wait(userid, client_address(request))
        if wait > 0:
            raise exceptions.Throttled(wait, detail=f"{THROTTLED}.")
        return super().authenticate_credentials(userid, password, request)


class BasicAuthenticationScheme(BasicScheme):
    """Documented in the OpenAPI schema as DRF's basic auth is."""

    target_class = "exchange.api.authentication.BasicAuthentication"


class LoginForm(AuthenticationForm):
    """A login form that refuses past the failed-login budget with a clear message, before any
    password is checked; `refusal` is then (HTTP status, Retry-After seconds) for the view."""

    refusal: tuple[int, int] | None = None

    def clean(self) -> dict[str, Any]:
        username, password = self.cleaned_data.get("username"), self.cleaned_data.get("password")
        try:
            if username is not None and password:
                wait = login_wait(username, client_address(self.request))
                if wait > 0:
                    self.refusal = (429, max(1, math.ceil(wait)))
                    raise ValidationError(
                        "Too many failed logins for this username or from this address: try again in "
                        "%(seconds)d seconds.", code="throttled", params={"seconds": self.refusal[1]})
            return super().clean()
        except Unavailable as exc:
            self.refusal = (503, max(1, math.ceil(exc.retry_after)))
            raise ValidationError("Logging in is unavailable for a moment: try again shortly.",
                                  code="unavailable") from exc


class AdminLoginForm(LoginForm, AdminAuthenticationForm):
    """The admin's login form (`admin.site.login_form`), with the same refusal."""


class LoginView(auth_views.LoginView):
    """/accounts/login/: Django's LoginView, answering 429 (or 503) with Retry-After when it refused."""

    authentication_form = LoginForm

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if isinstance(form, LoginForm) and form.refusal is not None:
            response.status_code = form.refusal[0]
            response["Retry-After"] = str(form.refusal[1])
        return response
