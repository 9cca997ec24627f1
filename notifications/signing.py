"""The webhook signature (API.md "Notifications"): `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""

import hashlib
import hmac
import time

HEADER = "Creditdesk-Signature"


def sign(*, body: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Creditdesk-Signature header value for this exact body, at `timestamp` (now by default)."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"
