"""Request throttles: auth and sign-up per address and username, turns per user, staff money writes per staff user, gateway calls per API key.

Counts live in core.ratelimits (one statement a check in core's table, or one Redis call when the
cache is Redis), shared by every process and instance; a turn's is counted by the turn's own first
statement. Rates are read from settings on every request (THROTTLE_*_RATE), so an operator's change
and a test's override apply without a restart. A throttled API request is `429` with `Retry-After`
and `{"detail", "code": "throttled", "retry_after"}`; a throttled admin login is a `429` page.
"""

import hashlib
import ipaddress
import logging
import math
from functools import cached_property

from django.conf import settings
from django.http import HttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from rest_framework import exceptions, status
from rest_framework.throttling import BaseThrottle

from core.ratelimits import Hit, Verdict, parse_rate, rate_store

logger = logging.getLogger(__name__)

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def client_ip(request) -> str:
    """The client's address: REMOTE_ADDR, or the TRUSTED_PROXY_COUNT-th address from the right of X-Forwarded-For.

    One rule for the throttles and the admin lockout (AXES_CLIENT_IP_CALLABLE). Only the hops our own
    proxies appended are trusted; anything further left was written by the client.
    """
    remote = request.META.get("REMOTE_ADDR") or ""
    hops = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if hops > 0 and forwarded:
        addresses = [part.strip() for part in forwarded.split(",") if part.strip()]
        if addresses:
            return _address(addresses[-min(hops, len(addresses))]) or remote
    return remote


def _address(hop: str) -> str | None:
    """The IP address a forwarded hop names, without the port some proxies append (`203.0.113.9:51234`,
    `[2001:db8::1]:443`); None when it names none. The lockout stores it in an `inet` column, so
    anything else (a client's junk, with more hops trusted than there are proxies) was a 500 at sign-in.
    """
    candidates = [hop]
    if hop.startswith("[") and "]" in hop:  # [v6] or [v6]:port
        candidates = [hop[1 : hop.index("]")]]
    elif hop.count(":") == 1:  # v4:port (a bare v6 address has more colons)
        candidates.append(hop.partition(":")[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def retry_message(wait: int) -> str:
    unit = "second" if wait == 1 else "seconds"
    return f"Too many requests; try again in {wait} {unit}."


class TooManyRequests(exceptions.Throttled):
    """429 with Retry-After (set by DRF from `wait`) and a body that says when to come back."""

    default_code = "throttled"

    def __init__(self, wait: float):
        seconds = max(1, math.ceil(wait))
        super().__init__(wait=seconds)
        # A dict detail is the response body as is (DRF's exception handler).
        self.detail = {"detail": retry_message(seconds), "code": "throttled", "retry_after": seconds}


def refuse(*, scope: str, path: str, verdict: Verdict) -> None:
    """A refused hit: logged, and raised as the 429 (TooManyRequests) with its wait."""
    wait = max(verdict.wait, 1)
    logger.warning("request throttled", extra={"scope": scope, "path": path, "retry_after": math.ceil(wait)})
    raise TooManyRequests(wait)


class SettingRateThrottle(BaseThrottle):
    """A rate limit whose rate is the Django setting `rate_setting`, read per request."""

    scope: str = ""
    rate_setting: str = ""

    def get_ident(self, request):
        return client_ip(request)

    def ident(self, request, view) -> str | None:
        """What is counted (an address, a user id, a username digest); None = not throttled here."""
        raise NotImplementedError

    def hit_for(self, request, view) -> Hit | None:
        """The hit this request counts, or None (no rate set, or nothing counted here)."""
        rate = parse_rate(getattr(settings, self.rate_setting, None))
        if rate is None:
            return None
        ident = self.ident(request, view)
        if ident is None:
            return None
        return Hit(key=f"{self.scope}:{ident}", rate=rate)

    def allow_request(self, request, view):
        hit = self.hit_for(request, view)
        if hit is None:
            return True
        verdict = rate_store().hit(hit)
        if not verdict.allowed:
            refuse(scope=self.scope, path=request.path, verdict=verdict)
        return True


def _submitted_username(request) -> str | None:
    """The username a login or sign-up form or JSON body names, as a digest (never the name itself in a key)."""
    data = getattr(request, "data", None)
    if data is None:
        data = request.POST
    value = data.get("username") if hasattr(data, "get") else None
    if not isinstance(value, str) or not value.strip():
        return None
    return hashlib.sha256(value.strip().casefold().encode()).hexdigest()[:32]


class AuthAddressThrottle(SettingRateThrottle):
    """Token requests and admin logins, per client address (THROTTLE_AUTH_RATE)."""

    scope = "auth_ip"
    rate_setting = "THROTTLE_AUTH_RATE"

    def ident(self, request, view):
        return self.get_ident(request)


class AuthUsernameThrottle(SettingRateThrottle):
    """Token requests and admin logins, per username tried, from any address (THROTTLE_AUTH_RATE)."""

    scope = "auth_user"
    rate_setting = "THROTTLE_AUTH_RATE"

    def ident(self, request, view):
        return _submitted_username(request)


class SignupAddressThrottle(SettingRateThrottle):
    """Sign-ups per client address (THROTTLE_SIGNUP_RATE)."""

    scope = "signup_ip"
    rate_setting = "THROTTLE_SIGNUP_RATE"

    def ident(self, request, view):
        return self.get_ident(request)


class SignupUsernameThrottle(SettingRateThrottle):
    """Sign-up attempts per username asked for (THROTTLE_SIGNUP_RATE)."""

    scope = "signup_user"
    rate_setting = "THROTTLE_SIGNUP_RATE"

    def ident(self, request, view):
        return _submitted_username(request)


class TurnThrottle(SettingRateThrottle):
    """Turns started per user (THROTTLE_TURN_RATE); listing turns is not counted.

    With the counts in the database, the hit is left on the request (`pending_rate_hit`) for the
    turn's first statement to count (sessions_app.selectors.turn_context): no statement of its own.
    The view then refuses with `refuse()` when that statement says so.
    """

    scope = "turn"
    rate_setting = "THROTTLE_TURN_RATE"

    def ident(self, request, view):
        if request.method != "POST" or not request.user.is_authenticated:
            return None
        return str(request.user.pk)

    def allow_request(self, request, view):
        hit = self.hit_for(request, view)
        if hit is not None and rate_store().counts_in_statements:
            request.pending_rate_hit = hit
            return True
        return super().allow_request(request, view)


class StaffMoneyThrottle(SettingRateThrottle):
    """Staff writes that move money or change prices or enforcement, per staff user (THROTTLE_STAFF_RATE).

    Put it on every such view (grant, pricing writes, refund, adjust): `throttle_classes = [StaffMoneyThrottle]`.
    Reads are not counted.
    """

    scope = "staff_money"
    rate_setting = "THROTTLE_STAFF_RATE"

    def ident(self, request, view):
        if request.method not in UNSAFE_METHODS or not request.user.is_authenticated:
            return None
        return str(request.user.pk)


class GatewayThrottle(SettingRateThrottle):
    """Calls to the OpenAI-compatible gateway per API key (THROTTLE_GATEWAY_RATE), reads included.

    The key is the request's `auth` (an accounts.ApiKey, counted by its id); without one (refused
    by authentication anyway) nothing is counted.
    """

    scope = "gateway"
    rate_setting = "THROTTLE_GATEWAY_RATE"

    def ident(self, request, view):
        key_id = getattr(request.auth, "pk", None)
        return None if key_id is None else str(key_id)


AUTH_THROTTLES = [AuthAddressThrottle, AuthUsernameThrottle]
SIGNUP_THROTTLES = [SignupAddressThrottle, SignupUsernameThrottle]


class AdminLoginThrottleMiddleware:
    """The admin login form under the same per-address and per-username limits as the token endpoint.

    django-axes locks a username and address pair after repeated failures; this limit also stops one
    address trying many usernames, or many addresses trying one.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    @cached_property
    def login_path(self) -> str:
        # Resolved once per process (the URLconf does not change), not on every POST.
        return reverse("admin:login")

    def __call__(self, request):
        if request.method == "POST" and request.path == self.login_path:
            for throttle_class in AUTH_THROTTLES:
                try:
                    throttle_class().allow_request(request, None)
                except TooManyRequests as exc:
                    return self.throttled_page(request, exc.wait)
        return self.get_response(request)

    @staticmethod
    def throttled_page(request, wait: int) -> HttpResponse:
        body = render_to_string(
            "admin/login_throttled.html",
            {"message": retry_message(wait), "title": "Too many login attempts"},
            request=request,
        )
        response = HttpResponse(body, status=status.HTTP_429_TOO_MANY_REQUESTS)
        response["Retry-After"] = str(wait)
        return response


def document_throttled_responses(result, generator, request, public):
    """drf-spectacular postprocessing hook: every throttled operation documents its 429."""
    throttled = set()
    for path, _regex, method, callback in generator.endpoints or []:
        if method.upper() not in UNSAFE_METHODS:  # every throttle here counts writes only
            continue
        view = generator.create_view(callback, method, request)
        if any(issubclass(cls, SettingRateThrottle) for cls in _throttle_classes(view)):
            throttled.add((generator.coerce_path(path, method, view), method.lower()))
    body = {
        "type": "object",
        "properties": {
            "detail": {"type": "string"},
            "code": {"type": "string", "enum": ["throttled"]},
            "retry_after": {
                "type": "integer",
                "description": "Seconds to wait; also the Retry-After header.",
            },
        },
        "required": ["detail"],
    }
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if (path, method) in throttled and "429" not in operation.get("responses", {}):
                operation.setdefault("responses", {})["429"] = {
                    "description": "Too many requests: wait `Retry-After` seconds, then try again.",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": body}},
                }
    return result


def _throttle_classes(view) -> list:
    try:
        return [type(throttle) for throttle in view.get_throttles()]
    except Exception:  # a view whose throttles depend on a real request: fall back to the class list
        return list(getattr(view, "throttle_classes", []))
