"""WebSocket routes (exchange/asgi.py serves them behind the allowed-hosts origin check)."""

from django.urls import re_path

from marketdata.consumers import UnknownPathConsumer

websocket_urlpatterns = [
    re_path(r"", UnknownPathConsumer.as_asgi()),  # last: anything else is refused
]
