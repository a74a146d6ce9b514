"""WSGI entry point: Django's own handler. exchange/asgi.py serves it for HTTP (in a thread pool, through
a2wsgi), so every request runs Django's synchronous stack whole in one thread; a WSGI server
(`gunicorn exchange.wsgi:application`) can serve it too, without WebSockets."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exchange.settings")

application = get_wsgi_application()
