"""The fields of a stream entry, for the matching shards' streams (stream_runner.entry_fields) and the
balance shards' (balance_codec.balance_entry): its format version `v`, the command `c` and, when a
caller waits for the reply, the list `r` to push it to and the caller's request id `i` (the reply goes
onto `r` addressed to it; without `i`, `r` is the caller's own key: the bare reply)."""

from __future__ import annotations

from typing import Any


def stream_entry(version: int, payload: bytes, reply_key: str | bytes | None = None,
                 request_id: bytes | None = None) -> dict[Any, Any]:
    fields: dict[Any, Any] = {"v": version, "c": payload}
    if reply_key is not None:
        fields["r"] = reply_key
        if request_id is not None:
            fields["i"] = request_id
    return fields
