"""A lean WebSocket client for the benchmarks' many subscribers: an asyncio protocol that does the HTTP
upgrade, reads the server's (unmasked) frames itself and hands each text message to a callback.

Why not the `websockets` client the other benchmarks use: at 1,000 subscribers on the server's two
cores, its per-message cost (a reader task per connection, an assembler, a queue; about 60 µs a message
measured by bench/ws_floor.py) made the clients, not the server, the larger share of the machine, and
their delay part of every latency measured. Here a message costs a slice and a callback; `received_at`
is when the chunk holding it came off the socket. Text and ping frames (answered with a pong), close;
nothing of the protocol beyond what a subscriber needs, and no permessage-deflate (not offered).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OnText = Callable[[bytes, float], None]


class LeanSocket(asyncio.Protocol):
    def __init__(self, host: str, path: str, on_text: OnText) -> None:
        self.host, self.path, self.on_text = host, path, on_text
        self.buffer = bytearray()
        self.fragments = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is not a subclass)
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write((f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.open, self.closed):
            if not future.done():
                future.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.time()
        buffer = self.buffer
        buffer += data
        if not self.open.done():
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buffer.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(ConnectionError(bytes(buffer[:end]).decode(errors="replace")))
                return
            del buffer[:end + 4]
            self.open.set_result(None)
        at, size = 0, len(buffer)
        while size - at >= 2:
            first, length = buffer[at], buffer[at + 1] & 0x7F
            head = 2
            if length == 126:
                if size - at < 4:
                    break
                length, head = struct.unpack_from("!H", buffer, at + 2)[0], 4
            elif length == 127:
                if size - at < 10:
                    break
                length, head = struct.unpack_from("!Q", buffer, at + 2)[0], 10
            if size - at < head + length:
                break
            payload = bytes(buffer[at + head:at + head + length])
            at += head + length
            opcode = first & 0x0F
            if opcode in (0x1, 0x0):
                if first & 0x80 and not self.fragments:
                    self.on_text(payload, now)
                else:
                    self.fragments += payload
                    if first & 0x80:
                        self.on_text(bytes(self.fragments), now)
                        self.fragments.clear()
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self._send(0x8, payload[:2])
                assert self.transport is not None
                self.transport.close()
        del buffer[:at]

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        repeated = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
        assert self.transport is not None
        self.transport.write(head + mask + masked)


async def connect(url: str, on_text: OnText) -> LeanSocket:
    """An open LeanSocket to ws://host:port/path."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, socket = await loop.create_connection(lambda: LeanSocket(parts.netloc, parts.path or "/", on_text),
                                             parts.hostname or "127.0.0.1", parts.port or 80)
    await socket.open
    return socket
