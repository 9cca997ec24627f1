"""System checks: the report time zone is a zone, and the usage rollups were built in it (else reports
mix days of two zones, and a warning says so); a purchase buys at least one credit, and its smallest
is one Stripe can charge; the settings that are amounts of credits are amounts; numeric settings are
not below their floors."""

import math
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfoNotFoundError

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import DatabaseError

from billing import periods
from billing.rollup import built_for_time_zone
from billing.stripe_checkout import STRIPE_API, STRIPE_MINIMUM_CHARGE, currency_amount
from core.checks import floor_errors
from core.money import PLACES, quantize


@register()
def check_report_time_zone(app_configs=None, **kwargs):
    """REPORT_TIME_ZONE names a zone: every charge files its call under the day it falls on there."""
    name = settings.REPORT_TIME_ZONE
    try:
        periods.zone()
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        return [
            Error(
                f"REPORT_TIME_ZONE={name!r} is not a time zone: every charge (and so every turn and "
                "gateway call) would fail.",
                hint="Set it to an IANA zone name such as UTC or Europe/Berlin.",
                id="billing.E002",
            )
        ]
    return []


@register(deploy=False)
def check_rollup_time_zone(app_configs=None, databases=None, **kwargs):
    """The rollups were last built in REPORT_TIME_ZONE: each charge files its call under its day in the
    zone of the moment, so after a change the rollups hold days of both zones until a rebuild recounts them."""
    # Only when the checks may query (migrate, runserver, check --database default), never at import.
    if not databases or check_report_time_zone():
        return []
    try:
        built_for = built_for_time_zone()
    except DatabaseError:  # not migrated yet: migrate builds the rollups
        return []
    current = settings.REPORT_TIME_ZONE
    if built_for is None or built_for == current:
        return []
    return [
        Warning(
            f"The usage rollups cut days in {built_for}, but REPORT_TIME_ZONE is {current}: calls charged "
            f"since the change are filed under days in {current}, earlier ones stay under days in "
            f"{built_for}, so usage reports mix days in {built_for} and {current} until the rollups are rebuilt.",
            hint="Run `manage.py rebuild_usage_rollup` once (safe while the server runs).",
            id="billing.W001",
        )
    ]


@register()
def check_purchase_bounds(app_configs=None, **kwargs):
    """A purchase buys PURCHASE_MIN_CREDITS..PURCHASE_MAX_CREDITS: at least one credit, and some amount at all."""
    low, high = settings.PURCHASE_MIN_CREDITS, settings.PURCHASE_MAX_CREDITS
    if 1 <= low <= high:
        return []
    why = "a purchase could buy no credits" if low < 1 else "no purchase could be made"
    return [
        Error(
            f"PURCHASE_MIN_CREDITS={low}, PURCHASE_MAX_CREDITS={high}: {why}.",
            hint="Set 1 <= PURCHASE_MIN_CREDITS <= PURCHASE_MAX_CREDITS (the defaults are 5 and 10000).",
            id="billing.E003",
        )
    ]


@register()
def check_purchase_minimum(app_configs=None, **kwargs):
    """With payments on, the smallest purchase (PURCHASE_MIN_CREDITS) must cost at least Stripe's minimum charge."""
    if not settings.STRIPE_API_KEY or settings.STRIPE_API_BASE.rstrip("/") != STRIPE_API:
        return []  # payments off, or a double (scripts/stripe_double.py has no minimum)
    if not settings.CREDIT_UNIT_PRICE > 0:
        return []  # billing.E004 says so
    currency = settings.CREDIT_CURRENCY
    minimum = STRIPE_MINIMUM_CHARGE.get(currency)
    smallest = currency_amount(credits=settings.PURCHASE_MIN_CREDITS)
    if minimum is None or smallest >= minimum:
        return []
    needed = math.ceil(minimum / settings.CREDIT_UNIT_PRICE)
    return [
        Warning(
            f"The smallest purchase, PURCHASE_MIN_CREDITS={settings.PURCHASE_MIN_CREDITS} credits, costs "
            f"{smallest} {currency.upper()}, under Stripe's minimum charge of {minimum} {currency.upper()}: "
            "Stripe refuses to create checkouts that small, so such purchases fail (502).",
            hint=f'Set PURCHASE_MIN_CREDITS to at least {needed} (docs/purchases.md, "Stripe configuration").',
            id="billing.W002",
        )
    ]


# The settings that are amounts of credits: each is compared with or added to balances (6 places).
CREDIT_AMOUNT_SETTINGS = ("LOW_BALANCE_THRESHOLD", "STARTING_CREDITS", "SUPPORT_GRANT_LIMIT")


@register()
def check_credit_amount_settings(app_configs=None, **kwargs):
    """Each credit amount setting is a number (else every request that reads it fails), used rounded to 6 places."""
    found = []
    for name in CREDIT_AMOUNT_SETTINGS:
        raw = getattr(settings, name)
        try:
            value = Decimal(raw)
        except (InvalidOperation, TypeError, ValueError):
            value = None
        if value is None or not value.is_finite():
            found.append(
                Error(
                    f"{name}={raw} is not an amount of credits: no balance can be compared with it.",
                    hint=f"Set {name} to a decimal amount such as 1.000000.",
                    id="billing.E001",
                )
            )
        elif quantize(value) != value:
            found.append(
                Warning(
                    f"{name}={value:f} has more than {PLACES} decimal places, as no balance does: "
                    f"it is used as {quantize(value)}.",
                    hint=f"Set {name} to {quantize(value)} to say so.",
                    id="billing.W003",
                )
            )
    return found


# Billing's numeric settings that have a floor: (name, the least it may be, what it is for).
SETTING_FLOORS = (
    ("CREDIT_UNIT_PRICE", Decimal("0.000001"), "what one credit costs a buyer: more than nothing"),
    ("SUPPORT_GRANT_LIMIT", Decimal(0), "the most a non-superuser staff member grants at once"),
    ("STARTING_CREDITS", Decimal(0), "what a new wallet starts with; no wallet opens in debt"),
    ("CALL_EVENT_PARTITIONS_AHEAD", 0, "months of call-event partitions made ahead of the current one"),
    ("CALL_EVENT_DETACH_LOCK_TIMEOUT_MS", 1, "how long a detach waits for its lock; 0 would wait forever"),
)


@register()
def check_setting_floors(app_configs=None, **kwargs):
    """A numeric setting below its floor: a negative limit, a free credit, a lock wait PostgreSQL refuses."""
    return floor_errors(
        ((name, getattr(settings, name), floor, meaning) for name, floor, meaning in SETTING_FLOORS),
        id="billing.E004",
    )
