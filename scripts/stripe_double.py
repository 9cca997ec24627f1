"""A local Stripe double for Checkout: the API the `stripe` library calls (via STRIPE_API_BASE), a hosted
payment page, and webhook events signed exactly as Stripe signs them. Loopback only; for tests and `make run`.

    python scripts/stripe_double.py --port 12111 \
        --webhook-url http://127.0.0.1:8000/api/v1/payments/stripe/webhook --webhook-secret whsec_demo

API (form-encoded bodies, as the library sends them; JSON answers; `Authorization: Bearer <any key>`):
  POST /v1/checkout/sessions              create a session (mode payment, line_items with price_data);
                                          an Idempotency-Key replays the first answer
  GET  /v1/checkout/sessions/{id}         retrieve it
  POST /v1/checkout/sessions/{id}/expire  expire an open session (sends checkout.session.expired)
Hosted page (the session's `url`): GET /checkout/{id} with Pay and Cancel buttons. Pay marks the session
complete and paid, sends `checkout.session.completed` to the webhook URL (header
`Stripe-Signature: t=<ts>,v1=<hex HMAC-SHA256 of "<ts>.<payload>">`), retrying in the background if the
app did not answer 2xx, and redirects to success_url; Cancel redirects to cancel_url (the session stays
open until it is expired, as on Stripe).

Tests use it in-process: `StripeDouble(webhook_url=..., webhook_secret=...).start()` on a free port.
"""

import argparse
import hashlib
import hmac
import html
import json
import logging
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger("stripe_double")

API_VERSION = "2025-09-30.clover"
SESSION_TTL_SECONDS = 24 * 3600
RETRY_DELAYS_SECONDS = (1, 2, 4, 8, 16)
_ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<payload>">."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def event_payload(event_type: str, session: dict) -> str:
    """A Stripe event (a snapshot of `session`) as the JSON text Stripe would send."""
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": {"object": session},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
    return json.dumps(event, indent=2)


def decode_form(body: str) -> dict:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: dict = {}
    for key, value in urllib.parse.parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part, following in zip(parts, parts[1:] + [None], strict=True):
            if following is None:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _listify(root)


def _listify(node):
    if not isinstance(node, dict):
        return node
    if node and all(key.isdigit() for key in node):
        return [_listify(node[key]) for key in sorted(node, key=int)]
    return {key: _listify(value) for key, value in node.items()}


class InvalidRequest(Exception):
    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


class StripeDouble:
    """The double's state and server: sessions by id, answers by idempotency key, events sent."""

    def __init__(
        self,
        *,
        webhook_url: str = "",
        webhook_secret: str = "",
        host: str = "127.0.0.1",
        port: int = 0,
        public_url: str | None = None,
    ):
        self.webhook_url, self.webhook_secret = webhook_url, webhook_secret
        self.sessions: dict[str, dict] = {}
        self.deliveries: list[tuple[str, str, int | None]] = []  # (event type, session id, status)
        self._answers: dict[str, dict] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), _handler_for(self))
        self.server.daemon_threads = True
        bound_host, bound_port = self.server.server_address[:2]
        self.base_url = public_url or f"http://{bound_host}:{bound_port}"
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "StripeDouble":
        self._thread = threading.Thread(target=self.server.serve_forever, name="stripe-double", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- the API ---------------------------------------------------------------------------------
    def create_session(self, params: dict, idempotency_key: str | None = None) -> dict:
        with self._lock:
            if idempotency_key and idempotency_key in self._answers:
                return self._answers[idempotency_key]
            session = self._new_session(params)
            self.sessions[session["id"]] = session
            if idempotency_key:
                self._answers[idempotency_key] = session
            return session

    def _new_session(self, params: dict) -> dict:
        if params.get("mode") != "payment":
            raise InvalidRequest("This double supports mode=payment only.", "mode")
        for name in ("success_url", "cancel_url"):
            if not str(params.get(name, "")).startswith(("http://", "https://")):
                raise InvalidRequest(f"Not a valid URL: {name}.", name)
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            raise InvalidRequest("line_items is required in payment mode.", "line_items")
        currencies, total = set(), 0
        for index, item in enumerate(items):
            price = item.get("price_data") or {}
            try:
                unit_amount, quantity = int(price["unit_amount"]), int(item.get("quantity", "1"))
            except (KeyError, ValueError) as exc:
                raise InvalidRequest(
                    "price_data needs an integer unit_amount.", f"line_items[{index}][price_data]"
                ) from exc
            if unit_amount < 0 or quantity < 1:
                raise InvalidRequest("Invalid amount or quantity.", f"line_items[{index}]")
            currencies.add(str(price.get("currency", "")).lower())
            total += unit_amount * quantity
        if len(currencies) != 1 or not re.fullmatch(r"[a-z]{3}", next(iter(currencies))):
            raise InvalidRequest("All line items need one three-letter currency.", "line_items")
        currency = currencies.pop()
        if total < 1:
            raise InvalidRequest("The total amount must be at least 1 minor unit.", "line_items")
        session_id = "cs_test_" + secrets.token_urlsafe(32).replace("-", "a").replace("_", "b")
        now = int(time.time())
        return {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": params["cancel_url"],
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currency,
            "customer_email": params.get("customer_email"),
            "expires_at": now + SESSION_TTL_SECONDS,
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "mode": "payment",
            "payment_intent": None,
            "payment_status": "unpaid",
            "status": "open",
            "success_url": params["success_url"],
            "url": f"{self.base_url}/checkout/{session_id}",
            "_line_items": items,
        }

    def session(self, session_id: str) -> dict:
        found = self.sessions.get(session_id)
        if found is None:
            raise InvalidRequest(f"No such checkout.session: '{session_id}'", "session", status=404)
        return found

    def pay(self, session_id: str) -> int | None:
        """What the hosted page's Pay button does: complete and pay the session, send the event; its answer's status."""
        with self._lock:
            session = self.session(session_id)
            if session["status"] != "open":
                raise InvalidRequest(f"This Checkout Session is {session['status']}; it cannot be paid.")
            session.update(
                status="complete", payment_status="paid", payment_intent="pi_" + secrets.token_hex(12)
            )
        return self.send_event("checkout.session.completed", session)

    def expire(self, session_id: str) -> int | None:
        with self._lock:
            session = self.session(session_id)
            if session["status"] != "open":
                raise InvalidRequest(
                    f"Only an open Checkout Session can be expired; this one is {session['status']}."
                )
            session.update(status="expired")
        return self.send_event("checkout.session.expired", session)

    @staticmethod
    def public(session: dict) -> dict:
        return {key: value for key, value in session.items() if not key.startswith("_")}

    # --- events ----------------------------------------------------------------------------------
    def send_event(self, event_type: str, session: dict) -> int | None:
        """Send one signed event now; if the app does not answer 2xx, retry it in the background (as Stripe does)."""
        if not self.webhook_url:
            return None
        payload = event_payload(event_type, self.public(session))
        status = self._deliver(event_type, session["id"], payload)
        if status is None or not 200 <= status < 300:
            threading.Thread(
                target=self._retry, args=(event_type, session["id"], payload), daemon=True
            ).start()
        return status

    def _deliver(self, event_type: str, session_id: str, payload: str) -> int | None:
        request = urllib.request.Request(
            self.webhook_url,
            data=payload.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json; charset=utf-8",
                "Stripe-Signature": sign(payload, self.webhook_secret),
                "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            logger.warning("stripe double: %s for %s not delivered: %s", event_type, session_id, exc)
            status = None
        self.deliveries.append((event_type, session_id, status))
        logger.info("stripe double: %s for %s -> %s", event_type, session_id, status)
        return status

    def _retry(self, event_type: str, session_id: str, payload: str) -> None:
        for delay in RETRY_DELAYS_SECONDS:
            time.sleep(delay)
            # Each attempt is signed anew, with its own timestamp, as Stripe does.
            status = self._deliver(event_type, session_id, payload)
            if status is not None and 200 <= status < 300:
                return


def _money(session: dict) -> str:
    currency = session["currency"]
    amount = session["amount_total"]
    if currency in _ZERO_DECIMAL:
        text = str(amount)
    elif currency in _THREE_DECIMAL:
        text = f"{amount // 1000}.{amount % 1000:03d}"
    else:
        text = f"{amount // 100}.{amount % 100:02d}"
    return f"{text} {currency.upper()}"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pay · Stripe double</title>
<style>body{{font-family:system-ui,sans-serif;max-width:30rem;margin:4rem auto;padding:0 1rem}}
.card{{border:1px solid #ccc;border-radius:8px;padding:1.5rem}}button{{font-size:1rem;padding:.5rem 1.2rem;margin-right:.5rem}}
.pay{{background:#635bff;color:#fff;border:0;border-radius:4px}}.note{{color:#666;font-size:.85rem}}</style></head>
<body><main class="card"><h1>Pay {amount}</h1>
<p id="item">{items}</p>
<p class="note">Stripe double (test mode, on this machine): no card is charged. Status: <strong id="status">{status}</strong>.</p>
{actions}
</main></body></html>"""


def _page(session: dict) -> str:
    items = ", ".join(
        html.escape(str((item.get("price_data") or {}).get("product_data", {}).get("name", "Item")))
        for item in session.get("_line_items", [])
    )
    if session["status"] == "open":
        actions = (
            f'<form method="post" action="/checkout/{session["id"]}/pay" style="display:inline">'
            '<button class="pay" type="submit" id="pay">Pay</button></form>'
            f'<form method="post" action="/checkout/{session["id"]}/cancel" style="display:inline">'
            '<button type="submit" id="cancel">Cancel</button></form>'
        )
    else:
        actions = "<p>This checkout is over.</p>"
    return _PAGE.format(
        amount=html.escape(_money(session)), items=items, status=session["status"], actions=actions
    )


def _handler_for(double: StripeDouble):
    class Handler(BaseHTTPRequestHandler):
        server_version = "stripe-double/1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            logger.debug("stripe double: " + format, *args)

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", "req_" + secrets.token_hex(8))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, exc: InvalidRequest) -> None:
            error = {"type": "invalid_request_error", "message": exc.message}
            if exc.param:
                error["param"] = exc.param
            self._json(exc.status, {"error": error})

        def _redirect(self, location: str) -> None:
            self.send_response(303)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _authorized(self) -> bool:
            if (
                self.headers.get("Authorization", "").startswith("Bearer ")
                and len(self.headers["Authorization"]) > 7
            ):
                return True
            self._error(InvalidRequest("You did not provide an API key.", status=401))
            return False

        def _body(self) -> str:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()

        def do_GET(self):  # noqa: N802 - http.server's name
            path = urllib.parse.urlsplit(self.path).path
            try:
                if match := re.fullmatch(r"/v1/checkout/sessions/([\w]+)", path):
                    if self._authorized():
                        self._json(200, double.public(double.session(match.group(1))))
                elif match := re.fullmatch(r"/checkout/([\w]+)", path):
                    data = _page(double.session(match.group(1))).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "text/html; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    raise InvalidRequest(f"Unrecognized request URL (GET: {path}).", status=404)
            except InvalidRequest as exc:
                self._error(exc)

        def do_POST(self):  # noqa: N802 - http.server's name
            path = urllib.parse.urlsplit(self.path).path
            body = self._body()
            try:
                if path == "/v1/checkout/sessions":
                    if self._authorized():
                        session = double.create_session(
                            decode_form(body), self.headers.get("Idempotency-Key")
                        )
                        self._json(200, double.public(session))
                elif match := re.fullmatch(r"/v1/checkout/sessions/([\w]+)/expire", path):
                    if self._authorized():
                        double.expire(match.group(1))
                        self._json(200, double.public(double.session(match.group(1))))
                elif match := re.fullmatch(r"/checkout/([\w]+)/pay", path):
                    double.pay(match.group(1))
                    session = double.session(match.group(1))
                    self._redirect(session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"]))
                elif match := re.fullmatch(r"/checkout/([\w]+)/cancel", path):
                    self._redirect(double.session(match.group(1))["cancel_url"])
                else:
                    raise InvalidRequest(f"Unrecognized request URL (POST: {path}).", status=404)
            except InvalidRequest as exc:
                self._error(exc)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default="", help="where events are POSTed (the app's webhook)")
    parser.add_argument("--webhook-secret", default="", help="signs the events (STRIPE_WEBHOOK_SECRET)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    double = StripeDouble(
        webhook_url=args.webhook_url, webhook_secret=args.webhook_secret, host=args.host, port=args.port
    )
    try:
        double.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        double.server.server_close()


if __name__ == "__main__":
    main()
