"""ASGI entry point for daphne: `daphne exchange.asgi:application`."""

import os

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")
django_asgi_app = get_asgi_application()  # set up Django before anything imports models

application = ProtocolTypeRouter({"http": django_asgi_app})
