"""ASGI entry point: `uvicorn exchange.asgi:application` (scripts/run.sh), or any ASGI server."""

import os
import sys

from channels.routing import ProtocolTypeRouter, URLRouter
from channels.security.websocket import AllowedHostsOriginValidator
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

# Sets Django up before anything below imports models.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from exchange.lifespan import lifespan_app  # noqa: E402
from exchange.status_phrases import register_with_twisted  # noqa: E402
from marketdata.routing import websocket_urlpatterns  # noqa: E402

register_with_twisted()  # "422 Unprocessable Entity", not "422 Unknown Status", under daphne
application = ProtocolTypeRouter({
    "http": django_asgi_app,
    "websocket": AllowedHostsOriginValidator(URLRouter(websocket_urlpatterns)),  # type: ignore[arg-type]
    "lifespan": lifespan_app,  # the matcher and the market maker start and stop with the server
})

if settings.DEBUG:
    print("WARNING: DEBUG is on (the local demo's default): error pages show code and request details. "
          "Never expose this server; production sets DEBUG=false and SECRET_KEY.",
          file=sys.stderr, flush=True)
