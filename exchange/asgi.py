"""ASGI entry point for daphne: `daphne exchange.asgi:application`."""

import os

from channels.routing import ProtocolTypeRouter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

from exchange.asgi_handler import get_asgi_application

# Django's handler without its per-request thread hops (exchange/asgi_handler.py); sets Django up
# before anything imports models.
django_asgi_app = get_asgi_application()

from exchange.api.gateway import OrderGateway  # noqa: E402  (after Django's setup)

# POST /api/submit from programs (token, no Origin) answered before Django's machinery; the rest,
# and whatever the gateway does not take as it stands, by Django (exchange/api/gateway.py).
application = ProtocolTypeRouter({"http": OrderGateway(django_asgi_app)})

from django.conf import settings  # noqa: E402

from matching import services  # noqa: E402

# The embedded matcher starts with the first request that needs it (daphne has no lifespan hook). With
# the demo market maker on, start both now, so the book is already quoted when the first user looks.
if settings.DEMO_MARKET_MAKER and not settings.REDIS_URL:
    services.start_in_background()
