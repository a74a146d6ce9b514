"""ASGI entry point: `uvicorn exchange.asgi:application` (scripts/run.sh), or any ASGI server.

HTTP goes to Django's WSGI handler in a fixed pool of WEB_THREADS threads (a2wsgi): one hand-off per
request, then Django's synchronous stack (middleware, DRF's views, the ORM) runs whole in one thread,
keeping its database connection between requests. Django's ASGI handler instead runs each request's
synchronous parts in a thread of their own and crosses between the event loop and threads at every
middleware that is not async-capable (WhiteNoise, our own), several times a request: measured, about
twice the server's CPU per request (docs/PERFORMANCE.md). WebSockets (Channels) and the lifespan
events stay async in the event loop.
"""

import os
import sys

from a2wsgi import WSGIMiddleware
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

# Sets Django up before anything below imports models.
django_wsgi_app = get_wsgi_application()

from django.conf import settings  # noqa: E402

from exchange.lifespan import lifespan_app  # noqa: E402
from exchange.status_phrases import register_with_twisted  # noqa: E402
from marketdata.auth import origin_check, websocket_auth  # noqa: E402
from marketdata.routing import websocket_urlpatterns  # noqa: E402

register_with_twisted()  # "422 Unprocessable Entity", not "422 Unknown Status", under daphne
application = ProtocolTypeRouter({
    # the stubs type a WSGI app's result as bytes; Django's handler returns an iterable response
    "http": WSGIMiddleware(django_wsgi_app, workers=settings.WEB_THREADS),  # type: ignore[arg-type]
    # /ws (docs/WEBSOCKET.md): an Origin, when sent, must be an allowed host's; then the session cookie or
    # an API token. Channels' stubs want its own URL pattern type; Django's re_path is what its docs use.
    "websocket": origin_check(websocket_auth(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
    "lifespan": lifespan_app,  # the matcher and the market maker start and stop with the server
})

if settings.DEBUG:
    print("WARNING: DEBUG is on (the local demo's default): error pages show code and request details. "
          "Never expose this server; production sets DEBUG=false and SECRET_KEY.",
          file=sys.stderr, flush=True)
