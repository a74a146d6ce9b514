"""ASGI entry point: `daphne exchange.asgi:application` (or any ASGI server)."""

import os
import sys

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

# Sets Django up before anything below imports models.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from exchange.status_phrases import register_with_twisted  # noqa: E402
from marketdata.routing import websocket_urlpatterns  # noqa: E402
from matching import services  # noqa: E402

register_with_twisted()  # "422 Unprocessable Entity", not "422 Unknown Status", under daphne
application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),
})

if settings.DEBUG:
    print("WARNING: DEBUG is on (the local demo's default): error pages show code and request details. "
          "Never expose this server; production sets DEBUG=false and SECRET_KEY.",
          file=sys.stderr, flush=True)

# The embedded matcher starts with the first request that needs it (daphne has no lifespan hook). With
# the demo market maker on, start both now, so the book is already quoted when the first user looks.
if settings.DEMO_MARKET_MAKER and not settings.REDIS_URL:
    services.start_in_background()
