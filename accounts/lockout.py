"""The page a locked-out admin login gets (AXES_LOCKOUT_CALLABLE): 429, Retry-After, and what to do."""

import logging
import math

from axes.helpers import get_cool_off
from django.shortcuts import render

logger = logging.getLogger(__name__)


def lockout_response(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    logger.warning("admin login locked out", extra={"path": request.path})
    # Rendered here: axes hands this to the middleware above it, after the view has run.
    response = render(
        request,
        "admin/login_locked.html",
        {"title": "Login locked", "minutes": minutes},
        status=429,
    )
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response
