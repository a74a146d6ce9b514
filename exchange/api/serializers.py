"""Order requests: shapes, types and units checked at the edge, before anything reaches the matcher.

Prices and quantities arrive as decimal strings (or JSON numbers) and leave as integer ticks and
lots of the instrument; NaN, infinities, huge, negative, zero and off-tick values are refused here
with a field error, so the engine only ever sees well-typed commands.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from exchange.api import lookups
from exchange.models import Instrument
from matching.engine import MAX_UNITS, OrderType, Side, STPMode, TimeInForce
from matching.services import OrderSpec

_MAX_TEXT = 40  # no valid price or quantity needs more characters


@extend_schema_field({"type": "string", "format": "decimal", "example": "101.25"})
class DecimalText(serializers.Field):
    """A decimal as a string or a JSON number; returned as a Decimal, never a float."""

    default_error_messages: ClassVar[dict[str, str]] = {"invalid": 'must be a decimal number, e.g. "101.25".'}

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, str | int | float):
            self.fail("invalid")
        text = str(data).strip()
        if not text or len(text) > _MAX_TEXT:
            self.fail("invalid")
        try:
            value = Decimal(text)
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        return value

    def to_representation(self, value: Decimal) -> str:
        return str(value)


def _choices(enum: type) -> list[str]:
    return [member.value for member in enum]


STP_MODES = _choices(STPMode)  # named once in the schema (settings.SPECTACULAR_SETTINGS)


class OrderRequest(serializers.Serializer):
    symbol = serializers.CharField(max_length=12)
    side = serializers.ChoiceField(choices=_choices(Side))
    type = serializers.ChoiceField(choices=_choices(OrderType), default=OrderType.LIMIT.value)
    quantity = DecimalText()
    price = DecimalText(required=False, allow_null=True)
    stop_price = DecimalText(required=False, allow_null=True)
    time_in_force = serializers.ChoiceField(choices=_choices(TimeInForce), default=TimeInForce.GTC.value)
    expire_at = serializers.DateTimeField(required=False, allow_null=True)
    post_only = serializers.BooleanField(default=False)
    stp = serializers.ChoiceField(choices=STP_MODES, required=False,
                                  help_text="default: the account's stp_default (initially cancel_newest)")
    client_order_id = serializers.RegexField(r"^[A-Za-z0-9._:-]{1,64}$", required=False, allow_null=True)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instrument = lookups.instrument_get(attrs["symbol"])  # cached in process memory
        if instrument is None:
            raise serializers.ValidationError({"symbol": f"unknown symbol {attrs['symbol']!r}"})
        attrs["instrument"] = instrument
        attrs["qty_lots"] = _units(instrument.qty_to_lots, attrs["quantity"], "quantity")
        for name in ("price", "stop_price"):
            value = attrs.get(name)
            attrs[f"{name}_ticks"] = None if value is None else _units(instrument.price_to_ticks, value, name)
        return attrs


def _units(convert: Any, value: Decimal, name: str) -> int:
    try:
        units = convert(value)
    except ValueError as exc:
        raise serializers.ValidationError({name: str(exc)}) from None
    if units > MAX_UNITS:
        raise serializers.ValidationError({name: "too large"})
    return units


class AmendRequest(serializers.Serializer):
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
        return {
            "qty_lots": None if "quantity" not in data else _units(instrument.qty_to_lots, data["quantity"],
                                                                    "quantity"),
            "price_ticks": None if "price" not in data else _units(instrument.price_to_ticks, data["price"],
                                                                   "price"),
            "stop_price_ticks": None if "stop_price" not in data else _units(
                instrument.price_to_ticks, data["stop_price"], "stop_price"),
        }


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
        price_ticks=data["price_ticks"],
        stop_price_ticks=data["stop_price_ticks"],
        tif=TimeInForce(data["time_in_force"]),
        expire_at=data.get("expire_at"),
        post_only=data["post_only"],
        stp=STPMode(data["stp"]) if "stp" in data else default_stp,
        client_order_id=data.get("client_order_id"),
    )
