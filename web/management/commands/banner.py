"""manage.py banner: `make run`'s welcome, printed once the server listens: where to go and the demo logins."""

import argparse
import math
import socket
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.management.commands.seed_demo import DEMO_USERS, LEAD, STAFF


def _seconds(value: str) -> float:
    """A positive, finite number of seconds (NaN never compares past a deadline: the wait never ended)."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


class Command(BaseCommand):
    help = "Wait until the development server listens, then print its URLs and the demo logins."

    def add_arguments(self, parser):
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="The address the server listens on (`make run` passes its HOST; default 127.0.0.1).",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=8000,
            help="The port the server listens on (`make run` passes its PORT; default 8000).",
        )
        parser.add_argument("--wait", type=_seconds, default=60.0, help="Seconds to wait for the server.")

    def handle(self, *args, host, port, wait, **options):
        # A plain connect, not an HTTP request: the server's log gets no line for it.
        deadline = time.monotonic() + wait
        while True:
            try:
                with socket.create_connection((host, port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"The server did not listen on {host}:{port} within {wait:.0f} seconds."
                    ) from None
                time.sleep(0.3)
        time.sleep(1.0)  # let the server's and the worker's start-up lines come first
        base = f"http://{host}:{port}"
        rule = "─" * 64
        users = "\n".join(f"    {name:<8} / {password}" for name, password in DEMO_USERS)
        self.stdout.write(
            f"\n{rule}\n"
            + self.style.SUCCESS("  creditdesk is running")
            + f"\n\n  Your pages (sign in, wallet, chats, files)   {base}/\n"
            f"  Support console                              {base}/admin/\n"
            f"  API, interactive docs                        {base}/api/v1/docs/\n"
            + self._buying(base)
            + "\n"
            f"  Demo users (for {base}/):\n{users}\n"
            f"  Staff (for {base}/admin/):\n    {STAFF[0]:<8} / {STAFF[1]}   (the Support group)\n"
            f"    {LEAD[0]:<8} / {LEAD[1]}     (superuser: prices, enforcement, revoking keys)\n\n"
            f"  Emails are written to tmp/mail/; Ctrl-C stops everything.\n{rule}\n"
        )

    @staticmethod
    def _buying(base: str) -> str:
        """The Buy credits line: said to go through the local Stripe double when settings point at it."""
        if not settings.STRIPE_API_KEY:
            return ""
        double = settings.STRIPE_API_BASE.startswith(("http://127.", "http://localhost"))
        where = "Buy credits (Stripe double, no card charged)" if double else "Buy credits (Stripe)"
        return f"  {where:<45}{base}/buy/\n"
