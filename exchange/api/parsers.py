"""The API's JSON parser: numbers keep their text, nesting is bounded, a key given twice is refused.

- A JSON number with a fraction or an exponent (101.25, 1e1) arrives as `JSONNumber`, a str holding the
  number exactly as written, never a float: `DecimalText` converts it exactly, or refuses an exponent.
  Integers arrive as int (exact already); only ASCII digits, as JSON has them.
- Bodies nested deeper than `MAX_DEPTH` are refused (400 malformed_request) before `json` reads them, so
  a body of a thousand brackets cannot reach the interpreter's recursion limit (a 500).
- NaN and Infinity, which Python's json would accept, and an object naming the same key twice (which
  one would count?) are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError

MAX_DEPTH = 32  # an order batch needs 3 ({"orders": [{...}]})

_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")


class JSONNumber(str):
    """A JSON number with a fraction or an exponent, as written in the body (e.g. "101.25")."""

    __slots__ = ()


def _number(text: str) -> JSONNumber:
    return JSONNumber(text)


def _integer(text: str) -> int:
    if not text.isascii():  # json's pure-Python scanner would match other digits
        raise ValueError(f"not a JSON number: {text!r}")
    return int(text)  # more than 4,300 digits: ValueError (sys.int_info.str_digits_check_threshold)


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"the key {key!r} is given twice")
            seen.add(key)
    return out


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep arrays and objects nest in `text` (strings skipped), counting no further than
    `limit` + 1. Malformed text gives some number; json refuses it anyway."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for char in brackets:
        if char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    break
        else:
            depth -= 1
    return deepest


def loads(text: str) -> Any:
    """JSON as the API reads it (see the module's docstring); ValueError if it is not acceptable."""
    if nesting_depth(text) > MAX_DEPTH:
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_float=_number, parse_int=_integer, parse_constant=_constant,
                          object_pairs_hook=_object)
    except RecursionError:  # not reachable past the depth check; never a 500 all the same
        raise ValueError("nested too deeply") from None


class JSONParser(parsers.JSONParser):
    """DRF's JSONParser with the rules above (DEFAULT_PARSER_CLASSES)."""

    def parse(self, stream: IO[bytes] | None, media_type: str | None = None,
              parser_context: Mapping[str, Any] | None = None) -> Any:
        # DRF 3.18's own (a supported text charset, else ParseError); djangorestframework-stubs 3.16 lack it
        encoding = parsers.get_encoding(parser_context or {})  # type: ignore[attr-defined]
        raw = b"" if stream is None else stream.read()
        try:
            return loads(raw.decode(encoding))
        except ValueError as exc:  # UnicodeDecodeError and json.JSONDecodeError included
            raise ParseError(f"JSON parse error - {exc}") from None
