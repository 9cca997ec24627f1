"""ASGI entry point (`make serve`): Django's WSGI handler on a pool of threads, streams relayed on the event loop (core.asgi)."""

import os
import sys

from django.conf import settings
from django.core.wsgi import get_wsgi_application

from core.asgi import ThreadedWSGI

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

application = ThreadedWSGI(get_wsgi_application(), threads=settings.WEB_THREADS)  # sets Django up first
# The loop relaying streams gets the interpreter back within this of asking (settings.py says why).
sys.setswitchinterval(settings.WEB_SWITCH_INTERVAL_MS / 1000)
