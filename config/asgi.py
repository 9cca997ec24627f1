"""ASGI entry point (`make serve`): Django's WSGI handler on a pool of threads, streams relayed on the event loop (core.asgi)."""

import os
import sys

# Before any import that may read a setting (core's modules do, through DRF).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from core.asgi import ThreadedWSGI  # noqa: E402
from core.middleware import largest_body  # noqa: E402

wsgi = get_wsgi_application()  # sets Django up first
application = ThreadedWSGI(wsgi, threads=settings.WEB_THREADS, max_body=largest_body())
# The loop relaying streams gets the interpreter back within this of asking (settings.py says why).
sys.setswitchinterval(settings.WEB_SWITCH_INTERVAL_MS / 1000)
