"""A call's hold, sized before it is reserved: its worst case at the model's price, refused when it cannot be money.

The one place every caller of `reserve` (a turn's calls, its summary, the gateway) sizes its hold, so
the bound is checked once, before any statement runs: a worst case past CALL_COST_MAX would
overflow the money columns (numeric(20,6)) as a hold, or later as its charge and the balance after
it, a 500 after the provider was paid for. billing.pricing argues why no call within the checked
settings reaches it.
"""

import logging
from decimal import Decimal, InvalidOperation

from billing.exceptions import CallTooCostly
from billing.models import ModelPrice
from billing.pricing import CALL_COST_MAX
from billing.services.charging import compute_cost
from core.money import format_money

logger = logging.getLogger(__name__)


def hold_amount(*, price: ModelPrice, input_tokens: int, output_tokens: int) -> Decimal:
    """The call's worst-case cost at `price` (what `reserve` holds); CallTooCostly (400) past CALL_COST_MAX."""
    try:
        cost = compute_cost(price=price, input_tokens=input_tokens, output_tokens=output_tokens)
    except InvalidOperation:  # more digits than a Decimal keeps: far past any money column
        cost = None
    if cost is not None and cost <= CALL_COST_MAX:
        return cost
    logger.warning(
        "call refused: its worst case does not fit a money column",
        extra={
            "model": price.model,
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "input_price_per_1k": format_money(price.input_price_per_1k),
            "output_price_per_1k": format_money(price.output_price_per_1k),
        },
    )
    raise CallTooCostly(
        model=price.model,
        cost=cost,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        input_price=price.input_price_per_1k,
        output_price=price.output_price_per_1k,
        limit=CALL_COST_MAX,
    )
