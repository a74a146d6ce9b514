"""Order requests: shapes, types and units checked at the edge, before anything reaches the matcher.

Prices and quantities arrive as plain decimal strings ("101.25") or JSON numbers (101.25, 10: taken
exactly from their text by exchange.api.parsers, never through a float) and leave as integer ticks
and lots of the instrument. Exponents, signs other than "-", spaces, digits other than ASCII, NaN,
infinities, huge, negative, zero and off-tick values are refused here with a field error; so are
fields the request does not know and orders whose shape their type forbids (a limit order without a
price, a market order with one ...), so the engine only ever sees well-formed commands.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

from django.http import QueryDict
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exchange.api import lookups
from exchange.models import Instrument
from matching.engine import MAX_UNITS, OrderType, Side, STPMode, TimeInForce
from matching.services import OrderSpec
from matching.timestamps import to_datetime

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

_MAX_TEXT = 40  # no valid price or quantity needs more characters
# Digits and at most one point, a digit on each side; a leading "-" is read (and refused as not
# positive, with that message). ASCII only: "\d" would take Arabic-Indic and other digits.
DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


@extend_schema_field({
    "oneOf": [
        {"type": "string", "pattern": f"^{DECIMAL_TEXT.pattern}$", "maxLength": _MAX_TEXT,
         "example": "101.25"},
        {"type": "number", "description": "without an exponent; read exactly from its digits"},
    ],
    "description": 'a plain decimal: "101.25" (or the JSON number 101.25)',
})
class DecimalText(serializers.Field):
    """A plain decimal as a string, or a JSON number without an exponent; returned as a Decimal
    made from its text, never from a float."""

    default_error_messages: ClassVar[dict[str, StrOrPromise]] = {
        "invalid": 'must be a plain decimal number, e.g. "101.25" (digits and one point; no exponent, '
                   "sign or spaces)",
        "too_long": f"must have at most {_MAX_TEXT} characters",
    }

    def to_internal_value(self, data: Any) -> Decimal:
        # str: a string, or a JSON number as written (exchange.api.parsers.JSONNumber); int: a JSON
        # integer, exact already. Never a float or a bool.
        if isinstance(data, bool) or not isinstance(data, str | int):
            self.fail("invalid")
        text = str(data)
        if len(text) > _MAX_TEXT:
            self.fail("too_long")
        if not DECIMAL_TEXT.fullmatch(text):
            self.fail("invalid")
        return Decimal(text)

    def to_representation(self, value: Decimal) -> str:
        return str(value)


# Fields a browser form may carry besides the serializer's own.
_FORM_FIELDS = frozenset({"csrfmiddlewaretoken"})


class KnownFieldsOnly(serializers.Serializer):
    """Refuses a field it does not know (400, each one named), so a misspelt name ("qty",
    "stop-price") is never silently ignored and can never change what a request means."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = set(self.fields) | (_FORM_FIELDS if isinstance(data, QueryDict) else set())
            unknown = [str(name) for name in data if name not in known]
            if unknown:
                raise serializers.ValidationError({name[:64]: [_unknown(name, known)] for name in unknown})
        return super().to_internal_value(data)


def _unknown(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name[:64], sorted(known - _FORM_FIELDS), n=1)
    return "unknown field" + (f" (did you mean {close[0]!r}?)" if close else "")


def _choices(enum: type[Enum]) -> list[str]:
    return [member.value for member in enum]


STP_MODES = _choices(STPMode)  # named once in the schema (settings.SPECTACULAR_SETTINGS)


@extend_schema_field({"type": "string", "description": "another name for type (the seed's): give either, or "
                                                     "both alike; one of " + ", ".join(_choices(OrderType))})
class TypeAlias(serializers.ChoiceField):
    """`order_type`, the seed's name for `type` (documented without an enum of its own)."""


class OrderRequest(KnownFieldsOnly):
    """A new order (POST /api/submit, each of a batch's). A field it does not know is refused (400,
    named), so a misspelt name never changes what the order means."""

    symbol = serializers.CharField(max_length=12)
    side = serializers.ChoiceField(choices=_choices(Side))
    type = serializers.ChoiceField(choices=_choices(OrderType), required=False,
                                   help_text="default: limit. limit and stop_limit need a price, market and "
                                             "stop take none; stop and stop_limit need a stop_price")
    order_type = TypeAlias(choices=_choices(OrderType), required=False)
    quantity = DecimalText()
    price = DecimalText(required=False, allow_null=True)
    stop_price = DecimalText(required=False, allow_null=True)
    protection_price = DecimalText(required=False, allow_null=True,
                                   help_text="market orders only: trade at this price or better (a buy never "
                                             "pays more, a sell never takes less); the rest is canceled")
    time_in_force = serializers.ChoiceField(choices=_choices(TimeInForce), default=TimeInForce.GTC.value)
    expire_at = serializers.DateTimeField(required=False, allow_null=True,
                                          help_text="gtd: required; day: default the session's end")
    post_only = serializers.BooleanField(default=False, help_text="limit orders only (not ioc or fok)")
    stp = serializers.ChoiceField(choices=STP_MODES, required=False,
                                  help_text="default: the account's stp_default (initially cancel_newest)")
    client_order_id = serializers.RegexField(r"^[A-Za-z0-9._:-]{1,64}$", required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, Any] = {}
        named, alias = attrs.get("type"), attrs.pop("order_type", None)
        if named is not None and alias is not None and named != alias:
            errors["order_type"] = f"says {alias!r} but type says {named!r}: give one of them"
        attrs["type"] = named or alias or OrderType.LIMIT.value
        errors.update(shape_errors(attrs))
        instrument = lookups.instrument_get(attrs["symbol"])  # cached in process memory
        if instrument is None:
            errors["symbol"] = f"unknown symbol {attrs['symbol']!r}"
        else:
            attrs["instrument"] = instrument
            protection = ("protection_ticks", "protection_price", instrument.price_to_ticks)
            for key, name, convert in (*unit_fields(instrument), protection):
                value = attrs.get(name)
                try:
                    attrs[key] = None if value is None else _units(convert, value, name)
                except serializers.ValidationError as exc:
                    assert isinstance(exc.detail, dict)  # _units names the field
                    errors = {**exc.detail, **errors}  # a shape error on the field says more
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


# Engine time is nanoseconds in a signed 64-bit integer (journal records): until 2262-04-11.
LATEST_EXPIRY = to_datetime(2**63 - 1).replace(hour=0, minute=0, second=0, microsecond=0)
PRICED = frozenset({OrderType.LIMIT, OrderType.STOP_LIMIT})
STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT})
EXPIRING = frozenset({TimeInForce.DAY, TimeInForce.GTD})


def shape_errors(attrs: dict[str, Any]) -> dict[str, str]:
    """What the order's type and time in force forbid or require, per field: mistakes in the request,
    answered 400 before anything reaches the matcher (whose refusal would record a rejected order and
    spend the order budget)."""
    kind, tif = OrderType(attrs["type"]), TimeInForce(attrs["time_in_force"])
    errors = {}
    if kind in PRICED and attrs.get("price") is None:
        errors["price"] = f"a {kind} order needs a price"
    elif kind not in PRICED and attrs.get("price") is not None:
        errors["price"] = f"a {kind} order takes no price (it trades at the prices in the book)"
    if attrs.get("protection_price") is not None and kind is not OrderType.MARKET:
        errors["protection_price"] = f"only market orders take a protection_price, not a {kind} order"
    if kind in STOPS and attrs.get("stop_price") is None:
        errors["stop_price"] = f"a {kind} order needs a stop_price"
    elif kind not in STOPS and attrs.get("stop_price") is not None:
        errors["stop_price"] = f"only stop and stop_limit orders take a stop_price, not a {kind} order"
    expire_at = attrs.get("expire_at")
    if tif is TimeInForce.GTD and expire_at is None:
        errors["expire_at"] = "a gtd order needs expire_at"
    elif expire_at is not None and tif not in EXPIRING:
        errors["expire_at"] = f"only day and gtd orders take expire_at, not {tif}"
    elif expire_at is not None and expire_at <= timezone.now():
        errors["expire_at"] = "is in the past"
    elif expire_at is not None and expire_at > LATEST_EXPIRY:
        errors["expire_at"] = f"must be before {LATEST_EXPIRY.date().isoformat()}"
    if kind not in PRICED and tif in EXPIRING:
        errors["time_in_force"] = f"a {kind} order does not rest, so it cannot be {tif}"
    if attrs.get("post_only"):
        if kind is not OrderType.LIMIT:
            errors["post_only"] = f"only limit orders can be post_only, not a {kind} order"
        elif tif in (TimeInForce.IOC, TimeInForce.FOK):
            errors["post_only"] = f"a post_only order rests: it cannot be {tif}"
    return errors


def unit_fields(instrument: Instrument) -> tuple[tuple[str, str, Callable[[Decimal], int]], ...]:
    """(the integer's key, the request's field, its conversion) for an order's quantity and prices."""
    return (("qty_lots", "quantity", instrument.qty_to_lots),
            ("price_ticks", "price", instrument.price_to_ticks),
            ("stop_price_ticks", "stop_price", instrument.price_to_ticks))


def _units(convert: Any, value: Decimal, name: str) -> int:
    try:
        units = convert(value)
    except ValueError as exc:
        raise serializers.ValidationError({name: str(exc)}) from None
    if units > MAX_UNITS:
        raise serializers.ValidationError({name: "too large"})
    return units


class AmendRequest(KnownFieldsOnly):
    """A new total quantity (must stay above what has filled), a new limit price, a new stop price."""

    quantity = DecimalText(required=False)
    price = DecimalText(required=False)
    stop_price = DecimalText(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError({"quantity": "give a quantity, a price or a stop price"})
        return attrs

    def to_units(self, instrument: Instrument) -> dict[str, int | None]:
        data = self.validated_data
        return {key: None if name not in data else _units(convert, data[name], name)
                for key, name, convert in unit_fields(instrument)}


class AccountSettingsRequest(serializers.Serializer):
    """PATCH /api/account: the settings a user may change."""

    stp_default = serializers.ChoiceField(choices=STP_MODES)


def order_spec(data: dict[str, Any], default_stp: STPMode) -> OrderSpec:
    """A validated order as the services take it; `default_stp`
    (the account's) when it names none."""
    return OrderSpec(
        symbol=data["instrument"].symbol,
        side=Side(data["side"]),
        order_type=OrderType(data["type"]),
        qty_lots=data["qty_lots"],
        # a market order's price is its protection, if it has one (the engine trades it no further)
        price_ticks=data["protection_ticks"] if data["type"] == OrderType.MARKET else data["price_ticks"],
        stop_price_ticks=data["stop_price_ticks"],
        tif=TimeInForce(data["time_in_force"]),
        expire_at=data.get("expire_at"),
        post_only=data["post_only"],
        stp=STPMode(data["stp"]) if "stp" in data else default_stp,
        client_order_id=data.get("client_order_id"),
    )
