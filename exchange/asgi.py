"""ASGI entry point: `daphne exchange.asgi:application` (or any ASGI server)."""

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

# Sets Django up before anything below imports models.
django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

from matching import services  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app})

# The embedded matcher starts with the first request that needs it (daphne has no lifespan hook). With
# the demo market maker on, start both now, so the book is already quoted when the first user looks.
if settings.DEMO_MARKET_MAKER and not settings.REDIS_URL:
    services.start_in_background()
