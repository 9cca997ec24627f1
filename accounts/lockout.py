"""The admin login lockout's policy hooks (django-axes): what is recorded, what is watched, and the 429 page."""

import hashlib
import logging
import math

from axes.helpers import get_cool_off
from django.contrib.auth import get_user_model
from django.shortcuts import render
from django.urls import reverse

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


def outside_admin_login(request, credentials) -> bool:
    """AXES_WHITELIST_CALLABLE: only the admin login form is watched; the API has its throttles."""
    return request is None or not request.path.startswith(reverse("admin:index"))
