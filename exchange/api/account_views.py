"""My account (cash, reserved, available, positions with P&L) and my settings; a user's positions.

Balances and positions come from the projection (risk.models); unrealised P&L is valued at the last
trade price the matcher published (`market_data().ticker(symbol).last`), never asked of the matcher.
"""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from exchange.api import schemas
from exchange.api.errors import ApiError
from exchange.api.serializers import AccountSettingsRequest
from exchange.api.views import ERRORS, at_tick_precision
from exchange.users import signed_in_user
from matching import services as matching_services
from matching.engine.types import STPMode
from risk import selectors, services
from risk.config import CASH_QUANTUM
from risk.models import Position


class AccountView(APIView):
    """GET /api/account: my balances and positions. PATCH it to change my settings (stp_default)."""

    @extend_schema(responses={200: schemas.AccountInfo, **ERRORS})
    def get(self, request: Request) -> Response:
        return Response(account_json(signed_in_user(request)))

    @extend_schema(request=AccountSettingsRequest, responses={200: schemas.AccountInfo, **ERRORS},
                   examples=schemas.ACCOUNT_EXAMPLES)
    def patch(self, request: Request) -> Response:
        form = AccountSettingsRequest(data=request.data)
        form.is_valid(raise_exception=True)
        user = signed_in_user(request)
        services.account_set_stp_default(user=user, stp=STPMode(form.validated_data["stp_default"]))
        return Response(account_json(user))


class UserPositionsView(APIView):
    """GET /api/user/{user_id}/positions: that user's positions: my own, or anyone's for staff."""

    @extend_schema(responses={200: schemas.PositionInfo(many=True), **ERRORS})
    def get(self, request: Request, user_id: int) -> Response:
        me = signed_in_user(request)
        user = me if user_id == me.pk else None
        if user is None and me.is_staff:
            user = get_user_model().objects.filter(pk=user_id).first()
        if user is None:  # someone else's (or nobody's): the same answer, so ids reveal nothing
            raise ApiError(404, "not_found", "no such user")
        return Response(positions_json(user))


def account_json(user: User) -> dict:
    account = selectors.account_get(user=user)
    return {
        "user_id": user.pk,
        "username": user.get_username(),
        "cash": _money(account.cash),
        "reserved": _money(account.reserved),
        "available": _money(account.available),
        "stp_default": account.stp_default,
        "positions": positions_json(user),
    }


def positions_json(user: User) -> list[dict]:
    return [position_json(position) for position in selectors.position_list(user=user)]


def position_json(position: Position) -> dict:
    instrument = position.instrument
    value: Decimal | None = Decimal(0)
    unrealised: Decimal | None = Decimal(0)
    last = None
    if position.qty:  # a flat position is worth nothing at any price: no need to look one up
        ticks = matching_services.market_data().ticker(instrument.symbol).last
        last = None if ticks is None else instrument.ticks_to_price(ticks)
        value = None if last is None else position.market_value(last)
        unrealised = None if last is None else position.unrealised(last)
    average = position.average_price
    return {
        "symbol": instrument.symbol,
        "quantity": str(position.qty.quantize(_places(instrument.lot_size))),
        "average_price": None if average is None else str(at_tick_precision(average, instrument)),
        "last_price": None if last is None else str(last),
        "market_value": _money(value),
        "realised_pnl": _money(position.realised),
        "unrealised_pnl": _money(unrealised),
    }


def _places(unit: Decimal) -> Decimal:
    """The quantum of a multiple of `unit`: 0.01 for 0.01, 1 for 1 and 10 (never an exponent form)."""
    exponent = unit.normalize().as_tuple().exponent
    assert isinstance(exponent, int), unit  # a tick or lot size: finite (a NaN's exponent is a letter)
    return Decimal(1).scaleb(min(0, exponent))


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount.quantize(CASH_QUANTUM))
