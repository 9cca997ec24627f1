"""The login lockout's policy hooks (django-axes): what is recorded, what is watched, and the 429 page."""

import hashlib
import logging
import math

from axes.helpers import get_cool_off
from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.template.defaultfilters import pluralize
from django.urls import reverse

logger = logging.getLogger(__name__)


def lockout_response(request, original_response=None, credentials=None):
    cool_off = get_cool_off(request)
    minutes = math.ceil(cool_off.total_seconds() / 60) if cool_off else None
    logger.warning("login locked out", extra={"path": request.path})
    # Rendered here: axes hands this to the middleware above it, after the view has run. Each form
    # answers in its own look: the admin's, or the user pages' (whose sign-in staff use too).
    if request.path == reverse("web:signin"):
        wait = (
            f"Try again in {minutes} minute{pluralize(minutes)}." if minutes else "Ask support to unlock it."
        )
        message = f"Too many failed sign-ins for this username from your address. {wait}"
        response = render(request, "web/throttled.html", {"message": message}, status=429)
    else:
        response = render(
            request,
            "admin/login_locked.html",
            {"title": "Login locked", "minutes": minutes},
            status=429,
        )
    if cool_off:
        response["Retry-After"] = str(math.ceil(cool_off.total_seconds()))
    return response


def attempted_username(request, credentials) -> str | None:
    """The name axes records and locks (AXES_USERNAME_CALLABLE): a real username as typed, else a digest.

    A password typed into the username field then never lands in the attempts table or its admin page.
    """
    data = credentials or {}
    name = data.get("username")
    if name is None and request is not None:
        name = request.POST.get("username")
    if not name:
        return None
    if get_user_model().objects.filter(username=name).exists():
        return name
    return "unknown-" + hashlib.sha256(name.encode()).hexdigest()[:12]


def outside_login_forms(request, credentials) -> bool:
    """AXES_WHITELIST_CALLABLE: the two sign-in forms are watched, the admin's and the user pages'.

    Both open a session the admin accepts, so a lock that watched one alone could be walked around
    through the other. The API's token endpoint has its throttles instead (its clients read 429s).
    """
    if request is None:
        return True
    return not (request.path.startswith(reverse("admin:index")) or request.path == reverse("web:signin"))
