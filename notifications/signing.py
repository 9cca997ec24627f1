"""The webhook signature (API.md "Notifications"): `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""

import hashlib
import hmac
import time

HEADER = "Creditdesk-Signature"


def sign(*, body: bytes, secret: str, previous: str = "", timestamp: int | None = None) -> str:
    """The Creditdesk-Signature header value for this exact body, at `timestamp` (now by default).

    With a `previous` secret (WEBHOOK_SECRET_PREVIOUS, while receivers change over), a second `v1`
    signed with it follows the first: a receiver holding either secret finds its own (docs/notifications.md).
    """
    t = int(time.time()) if timestamp is None else timestamp
    signatures = [secret, previous] if previous else [secret]
    return f"t={t}," + ",".join(
        f"v1={hmac.new(key.encode(), f'{t}.'.encode() + body, hashlib.sha256).hexdigest()}"
        for key in signatures
    )
