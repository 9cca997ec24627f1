"""Model prices: create and change per-1k-token prices; recorded calls keep the prices they were charged."""

import logging
import re
from decimal import Decimal

from django.db import IntegrityError, transaction

from billing.exceptions import BillingError, InvalidAmount
from billing.models import ModelPrice
from core.money import AmountError, format_money, parse_amount

logger = logging.getLogger(__name__)

MODEL_NAME_MAX = ModelPrice._meta.get_field("model").max_length
# Provider model names: "gpt-4.1-mini", "openai/gpt-4o", "claude-3-5-sonnet@20240620". No spaces or
# control characters; the first and last characters a letter or digit, as docs/api.md says (a name
# ending in "/" would be ambiguous with the URL's slash, one ending in "-" or "." a typo); one
# character alone is a name. The schemas' `pattern` (pricing, sessions) is this same text.
MODEL_NAME_PATTERN = r"[A-Za-z0-9](?:[A-Za-z0-9._:@+/-]*[A-Za-z0-9])?"
_MODEL_NAME_RE = re.compile(MODEL_NAME_PATTERN, re.ASCII)
_UNSET = object()
# The largest price per 1k tokens. A money column holds less than 10^14 credits (20 digits, 6 of
# them after the point), and a call's cost lands in several: its hold, its event and debit, the
# wallet's balance after it, a key's or cap's spending, the usage rollups. A call is under 10^7
# tokens: a gateway prompt fits a 1 MB body, which the counting rule (a token per started 4
# characters; tools re-serialized at most 3 characters per body byte) makes under 10^6 tokens; a
# turn's prompt is smaller (64,000 characters of history, 32,000 of content, the tool results of the
# default LLM_MAX_TOOL_STEPS); the output is at most LLM_MAX_OUTPUT_TOKENS, itself at most 10^6
# (sessions_app.E003). So at 10^6 credits per 1k (10,000 USD at the default CREDIT_UNIT_PRICE,
# thousands of times the dearest model sold today) a call costs under 10^7 / 1000 x 10^6 = 10^10
# credits: four orders of magnitude below the columns' limit. The schema's `maximum` is PRICE_MAX,
# exactly what validation allows.
PRICE_MAX = 10**6
# The most one call may hold (and so be charged): that bound. A call past it (settings past their
# checks, a token count nobody foresaw) is refused before its hold by billing.services.hold_amount.
CALL_COST_MAX = 10**10


class InvalidPrice(BillingError):
    code = "invalid_price"


class PriceExists(BillingError):
    """The model is priced already: a conflict with the current state, not a malformed request."""

    status_code = 409
    code = "model_already_priced"


def validate_model_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidPrice("A model name is required (e.g. gpt-4.1-mini).", field="model")
    if len(name) > MODEL_NAME_MAX:
        raise InvalidPrice(
            f"Ensure the model name has no more than {MODEL_NAME_MAX} characters.", field="model"
        )
    if not _MODEL_NAME_RE.fullmatch(name):
        raise InvalidPrice(
            "A model name is ASCII letters and digits with . _ - : @ + / inside (e.g. gpt-4.1-mini); "
            "no spaces, and it starts and ends with a letter or digit.",
            field="model",
        )
    return name


def validate_price(raw, *, field: str) -> Decimal:
    """A price per 1k tokens: an exact decimal (API.md amount rules), at most 6 places, >= 0."""
    try:
        value = parse_amount(raw)
    except AmountError as exc:
        raise InvalidAmount(str(exc), field=field) from exc
    if value < 0:
        raise InvalidAmount("Ensure this value is greater than or equal to 0.", field=field)
    if value > PRICE_MAX:
        raise InvalidAmount(f"Ensure this value is less than or equal to {PRICE_MAX}.", field=field)
    return value


def _validate_active(active) -> bool:
    if not isinstance(active, bool):
        raise InvalidPrice("Must be a boolean: true or false.", field="active")
    return active


def create_price(*, model: str, input_price_per_1k, output_price_per_1k, active: bool = True) -> ModelPrice:
    """Price a new model; a model that already has a price is refused (change it with update_price)."""
    model = validate_model_name(model)
    input_price = validate_price(input_price_per_1k, field="input_price_per_1k")
    output_price = validate_price(output_price_per_1k, field="output_price_per_1k")
    active = _validate_active(active)
    exists = PriceExists(
        f"The model {model!r} already has a price; change it with PATCH /api/v1/admin/pricing/{model}/."
    )
    if ModelPrice.objects.filter(model=model).exists():
        raise exists
    try:
        with transaction.atomic():
            price = ModelPrice.objects.create(
                model=model,
                input_price_per_1k=input_price,
                output_price_per_1k=output_price,
                active=active,
            )
    except IntegrityError as exc:  # a concurrent create of the same model won the unique constraint
        raise exists from exc
    logger.info(
        "model price created",
        extra={
            "model": model,
            "input_price_per_1k": format_money(input_price),
            "output_price_per_1k": format_money(output_price),
            "active": active,
        },
    )
    return price


def update_price(
    *, price: ModelPrice, input_price_per_1k=_UNSET, output_price_per_1k=_UNSET, active=_UNSET
) -> ModelPrice:
    """Change a model's prices or availability; only calls made afterwards are charged the new price."""
    changes = {}
    if input_price_per_1k is not _UNSET:
        changes["input_price_per_1k"] = validate_price(input_price_per_1k, field="input_price_per_1k")
    if output_price_per_1k is not _UNSET:
        changes["output_price_per_1k"] = validate_price(output_price_per_1k, field="output_price_per_1k")
    if active is not _UNSET:
        changes["active"] = _validate_active(active)
    if not changes:
        return price
    with transaction.atomic():
        locked = ModelPrice.objects.select_for_update().get(pk=price.pk)
        before = {name: getattr(locked, name) for name in changes}
        for name, value in changes.items():
            setattr(locked, name, value)
        locked.save(update_fields=[*changes, "updated_at"])
    logger.info(
        "model price changed",
        extra={
            "model": locked.model,
            "before": {k: format_money(v) if isinstance(v, Decimal) else v for k, v in before.items()},
            "after": {k: format_money(v) if isinstance(v, Decimal) else v for k, v in changes.items()},
        },
    )
    return locked
