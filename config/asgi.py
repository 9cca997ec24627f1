"""ASGI entry point (`make serve`): Django's WSGI handler on a pool of threads, streams relayed on the event loop (core.asgi)."""

import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from core.asgi import ThreadedWSGI
from core.middleware import largest_body

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

wsgi = get_wsgi_application()  # sets Django up first
application = ThreadedWSGI(wsgi, threads=settings.WEB_THREADS, max_body=largest_body())
# The loop relaying streams gets the interpreter back within this of asking (settings.py says why).
sys.setswitchinterval(settings.WEB_SWITCH_INTERVAL_MS / 1000)
