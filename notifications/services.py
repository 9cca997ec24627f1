"""Delivering wallet events: the job deferred, the signed webhook POST and the user's email, each recorded as a Delivery.

Network calls happen outside any transaction; each attempt is committed before it is made (so a
worker killed mid-call leaves `attempts` counted and the delivery pending), and its outcome after.
A delivery is at-least-once: a retried or recovered job may send an event twice; receivers dedupe by `id`.
"""

import functools
import http.client
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from billing.models import WalletEvent
from core import queue
from core.money import format_money
from notifications import signing
from notifications.models import Delivery

logger = logging.getLogger(__name__)

DELIVER_TASK = "notifications.deliver_wallet_event"  # notifications.tasks; deferred by defer_delivery() only
# Deliveries wait on other people's servers (up to WEBHOOK_TIMEOUT_SECONDS each): their own queue, and
# below the chores' priority, so that a worker picks a due chore first whenever a slot frees, and a
# worker can be given to them alone (`--queues notifications`); docs/notifications.md.
DELIVERY_QUEUE = "notifications"
DELIVERY_PRIORITY = -10
ERROR_MAX = 500
# Emails tell the user what to do; a wallet back above the line is news for the webhook only.
_EMAIL_SUBJECTS = {
    WalletEvent.Type.LOW_BALANCE: "Your creditdesk credits are running low",
    WalletEvent.Type.DEPLETED: "Your creditdesk credits have run out",
    WalletEvent.Type.SPEND_CAP_THRESHOLD: "You have used {percent}% of your creditdesk spending cap",
}


class DeliveryFailed(Exception):
    """At least one channel of an event failed this time; the job is retried with backoff."""


def payload(event: WalletEvent) -> dict:
    """The webhook body (API.md): id, type, created_at, data {user_id, balance, threshold} (a cap's alert
    adds `percent`, and its threshold is the cap)."""
    data = {
        "user_id": event.wallet.user_id,
        "balance": format_money(event.balance),
        "threshold": format_money(event.threshold),
    }
    if event.type == WalletEvent.Type.SPEND_CAP_THRESHOLD:
        data["percent"] = event.percent
    return {
        "id": str(event.uuid),
        "type": event.type,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
        "data": data,
    }


def deliver_event(*, event_id: int, attempt: int, final: bool) -> list[Delivery]:
    """Send the event on every channel not yet done; raise DeliveryFailed to be retried, or mark dead if `final`."""
    event = WalletEvent.objects.select_related("wallet__user").get(pk=event_id)
    deliveries = _deliveries(event)
    failed = []
    for delivery in deliveries:
        if delivery.state != Delivery.State.PENDING:
            continue
        _start_attempt(delivery)
        started = time.monotonic()
        try:
            if delivery.channel == Delivery.Channel.WEBHOOK:
                _post_webhook(event)
            else:
                _send_email(event)
        except Exception as exc:  # any failure of a receiver is recorded, then retried
            error = f"{type(exc).__name__}: {exc}"[:ERROR_MAX]
            dead = final
            _finish(delivery, state=Delivery.State.DEAD if dead else Delivery.State.PENDING, error=error)
            (logger.error if dead else logger.warning)(
                "delivery dead: no more tries" if dead else "delivery failed: will retry",
                extra=_log_extra(event, delivery, attempt, started, error=error),
            )
            failed.append(delivery)
            continue
        _finish(delivery, state=Delivery.State.DELIVERED, error="")
        logger.info("delivered", extra=_log_extra(event, delivery, attempt, started))
    if failed and not final:
        raise DeliveryFailed(", ".join(f"{d.channel}: {d.last_error}" for d in failed))
    return deliveries


def defer_delivery(*, event_id: int) -> int:
    """Queue the event's delivery job in the caller's transaction (it commits or rolls back with it); returns the job id.

    One job per event at a time (the lock): a redelivery waits for a running delivery to finish.
    """
    # Its queue and priority are the task's own (notifications.tasks), registered in every process.
    return queue.defer(DELIVER_TASK, lock=f"wallet-event-{event_id}", event_id=event_id)


def redeliver(*, event: WalletEvent, initiated_by=None) -> int:
    """Send an event again on its delivered or dead channels (an operator's action); returns the job id.

    A channel skipped when the event was first sent (no WEBHOOK_URL then, no email address) is decided
    again by the job, as on a first run: set the URL, then redeliver, and the event goes there too.
    """
    with transaction.atomic():
        Delivery.objects.filter(event=event, state=Delivery.State.SKIPPED).delete()  # made again by the job
        reset = Delivery.objects.filter(event=event).update(state=Delivery.State.PENDING, last_error="")
        job_id = defer_delivery(event_id=event.pk)
    logger.info(
        "redelivery requested",
        extra={
            "event": str(event.uuid),
            "deliveries": reset,
            "job_id": job_id,
            "initiated_by": getattr(initiated_by, "pk", None),
        },
    )
    return job_id


def _deliveries(event: WalletEvent) -> list[Delivery]:
    """The event's delivery rows, created on its first run: skipped where there is nowhere to send it."""
    wanted = {
        Delivery.Channel.WEBHOOK: bool(settings.WEBHOOK_URL),
        Delivery.Channel.EMAIL: event.type in _EMAIL_SUBJECTS and bool(event.wallet.user.email),
    }
    rows = []
    for channel, enabled in wanted.items():
        state = Delivery.State.PENDING if enabled else Delivery.State.SKIPPED
        row, _ = Delivery.objects.get_or_create(event=event, channel=channel, defaults={"state": state})
        rows.append(row)
    return rows


def _start_attempt(delivery: Delivery) -> None:
    delivery.attempts += 1
    delivery.last_attempt_at = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        attempts=delivery.attempts, last_attempt_at=delivery.last_attempt_at
    )


def _finish(delivery: Delivery, *, state: str, error: str) -> None:
    delivery.state, delivery.last_error = state, error
    if state == Delivery.State.DELIVERED:
        delivery.delivered_at = timezone.now()
    Delivery.objects.filter(pk=delivery.pk).update(
        state=state, last_error=error, delivered_at=delivery.delivered_at
    )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer we do not follow (it would turn the POST into a GET): it fails the attempt."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


class _Deadline:
    """Cuts an attempt's connection when its time is up: a socket timeout bounds each read alone, so a
    receiver sending its answer a byte at a time could hold a worker slot (and the event's lock) for hours."""

    def __init__(self, seconds: float):
        self.at = time.monotonic() + seconds
        self.passed = False

    def watch(self, connection) -> threading.Timer:
        timer = threading.Timer(max(0.0, self.at - time.monotonic()), self._cut, args=(connection,))
        timer.daemon = True
        timer.start()
        return timer

    def _cut(self, connection) -> None:
        self.passed = True
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)  # the blocked read returns at once
        except (AttributeError, OSError):
            pass


def _watched(base: type[http.client.HTTPConnection]) -> type[http.client.HTTPConnection]:
    """`base` whose connection is cut at the request's deadline (`deadline=`), from connect to close."""

    class Watched(base):
        def __init__(self, *args, deadline: _Deadline, **kwargs):
            super().__init__(*args, **kwargs)
            self._deadline, self._timer = deadline, None

        def connect(self):
            # Watched from before the connection: a TLS handshake sent a byte at a time is cut off too
            # (the timer finds the socket once it exists; name lookup and connect have the socket timeout).
            self._timer = self._deadline.watch(self)
            super().connect()

        def close(self):
            if self._timer is not None:
                self._timer.cancel()
            super().close()

    return Watched


class _DeadlineHandler(urllib.request.HTTPHandler, urllib.request.HTTPSHandler):
    """http(s) whose connections are cut at the attempt's deadline (a Request's `deadline`)."""

    _HTTP, _HTTPS = _watched(http.client.HTTPConnection), _watched(http.client.HTTPSConnection)

    def http_open(self, req):
        return self.do_open(functools.partial(self._HTTP, deadline=req.deadline), req)

    def https_open(self, req):
        return self.do_open(functools.partial(self._HTTPS, deadline=req.deadline), req, context=self._context)


_opener = urllib.request.build_opener(_NoRedirects, _DeadlineHandler)


def _post_webhook(event: WalletEvent) -> int:
    url = settings.WEBHOOK_URL
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"WEBHOOK_URL must be an http(s) URL, not {url!r}")
    body = json.dumps(payload(event), separators=(",", ":")).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "creditdesk-webhooks/1",
            signing.HEADER: signing.sign(
                body=body, secret=settings.WEBHOOK_SECRET, previous=settings.WEBHOOK_SECRET_PREVIOUS
            ),
        },
    )
    # WEBHOOK_TIMEOUT_SECONDS bounds the whole attempt (connect, send, the answer's status and
    # headers), not each read alone. A connection cut at the deadline can look like an answer that
    # ended early (its headers cut short): it is not one, whatever was read.
    request.deadline = deadline = _Deadline(settings.WEBHOOK_TIMEOUT_SECONDS)
    late = f"no whole answer within WEBHOOK_TIMEOUT_SECONDS ({settings.WEBHOOK_TIMEOUT_SECONDS:g} s)"
    try:
        with _opener.open(request, timeout=settings.WEBHOOK_TIMEOUT_SECONDS) as response:
            if deadline.passed:
                raise DeliveryFailed(late)
            return response.status
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(late if deadline.passed else f"HTTP {exc.code} from the receiver") from exc
    except (OSError, http.client.HTTPException) as exc:
        if deadline.passed:
            raise DeliveryFailed(late) from exc
        raise


def _send_email(event: WalletEvent) -> None:
    user = event.wallet.user
    balance, threshold = format_money(event.balance), format_money(event.threshold)
    if event.type == WalletEvent.Type.SPEND_CAP_THRESHOLD:
        send_mail(
            subject=_EMAIL_SUBJECTS[event.type].format(percent=event.percent),
            message=(
                f"Hello {user.get_username()},\n\nThis period's spending has reached {event.percent}% of "
                f"your spending cap of {threshold} credits. At 100% new calls are refused until the period "
                "ends (or the cap is raised).\n"
            ),
            from_email=None,
            recipient_list=[user.email],
        )
        return
    if event.type == WalletEvent.Type.DEPLETED:
        advice = "New turns may be refused until credits are added. Ask your administrator for a top-up."
    else:
        advice = f"Your balance is at or below {threshold} credits. Ask your administrator for a top-up."
    send_mail(
        subject=_EMAIL_SUBJECTS[event.type],
        message=f"Hello {user.get_username()},\n\nYour balance is {balance} credits.\n{advice}\n",
        from_email=None,
        recipient_list=[user.email],
    )


def _log_extra(event: WalletEvent, delivery: Delivery, attempt: int, started: float, error: str = "") -> dict:
    extra = {
        "event": str(event.uuid),
        "type": event.type,
        "channel": delivery.channel,
        "delivery_id": delivery.pk,
        "attempt": delivery.attempts,
        "job_attempt": attempt,
        "ms": round((time.monotonic() - started) * 1000),
    }
    if error:
        extra["error"] = error
    return extra
