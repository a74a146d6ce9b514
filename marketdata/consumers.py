"""WebSocket consumers."""

from __future__ import annotations

from channels.generic.websocket import WebsocketConsumer


class UnknownPathConsumer(WebsocketConsumer):
    """A WebSocket handshake to a path we do not serve is refused (the client sees 403), not a 500."""

    def connect(self) -> None:
        self.close()
