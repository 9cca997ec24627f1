"""ASGI entry point (`make serve`): streams on Django's async handler, every other request on its WSGI handler's threads (core.asgi)."""

import os

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.wsgi import get_wsgi_application

from core.asgi import StreamRouter, ThreadedWSGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

streaming = get_asgi_application()  # sets Django up
application = StreamRouter(
    streaming=streaming,
    threaded=ThreadedWSGI(get_wsgi_application(), threads=settings.WEB_THREADS),
)
