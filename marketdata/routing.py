"""WebSocket routes (exchange/asgi.py serves them behind the origin check and the authentication)."""

from django.urls import re_path

from marketdata.consumers import MarketConsumer, UnknownPathConsumer

# Channels routes ASGI applications with Django's re_path, whose stubs know only views (and Channels' stubs
# do not retype it): hence the ignores here and at URLRouter in exchange/asgi.py.
websocket_urlpatterns = [
    re_path(r"^ws/?$", MarketConsumer.as_asgi()),  # type: ignore[arg-type]  # docs/WEBSOCKET.md
    re_path(r"", UnknownPathConsumer.as_asgi()),  # type: ignore[arg-type]  # last: anything else is refused
]
