"""One gateway call, billed: reserved (the wallet, the key's limit and the caps in one statement), made, charged.

Reuses billing's services as a turn does: `reserve` before the provider is called (refused: 402,
nothing written), the provider called outside any transaction, `charge` with what the provider
reports capped at the hold (purpose `api`, the key's limit, the request's `user`), a failed call
recorded at no cost with its hold released, a stream's progress recorded on its hold.
"""

import logging
import time
from dataclasses import dataclass

from billing import services as billing_services
from billing.models import CreditHold, LLMCallEvent, ModelPrice
from billing.selectors import known_price
from sessions_app.gateway.errors import ModelNotFound
from sessions_app.gateway.requests import ChatRequest
from sessions_app.providers import (
    LLMProvider,
    ProviderError,
    count_tokens,
    estimate_prompt_tokens,
    get_provider,
)

logger = logging.getLogger(__name__)

API = LLMCallEvent.Purpose.API


@dataclass
class GatewayCall:
    """A reserved call: what to send, the key it is made with, its hold and the price it is charged at."""

    user: object
    key: object  # accounts.ApiKey (its spend_limit_id is billing's limit row)
    request: ChatRequest
    provider: LLMProvider
    price: ModelPrice
    hold: CreditHold
    started: float
    settled: bool = False
    streaming: bool = False  # its stream's producer has run (gateway.streaming)

    @classmethod
    def reserve(cls, *, user, key, request: ChatRequest) -> "GatewayCall":
        """Hold the call's worst case (the prompt by the counting rule plus max_tokens); 404 for an
        unpriced model, 400 when that worst case is more than a call may hold (CallTooCostly), 402
        when the wallet (under enforcement), the key's limit or a cap refuses."""
        price = known_price(model=request.model)
        if price is None:
            raise ModelNotFound(request.model)
        estimate = billing_services.hold_amount(
            price=price,
            input_tokens=estimate_prompt_tokens(request.messages, request.tools),
            output_tokens=request.max_tokens,
        )
        reservation = billing_services.reserve(
            user=user, amount=estimate, model=request.model, spend_limit_id=key.spend_limit_id
        )
        if reservation.price is None:  # withdrawn since this process last read it
            if reservation.hold is not None:
                billing_services.release(hold=reservation.hold)
            raise ModelNotFound(request.model)
        if reservation.refused:
            raise reservation.refusal()
        return cls(
            user=user,
            key=key,
            request=request,
            provider=get_provider(),
            price=reservation.price,
            hold=reservation.hold,
            started=time.monotonic(),
        )

    def provider_arguments(self) -> dict:
        return {
            "model": self.request.model,
            "messages": self.request.messages,
            "max_output_tokens": self.request.max_tokens,
            "tools": self.request.tools,
            "options": self.request.options,
        }

    def prompt_tokens(self) -> int:
        return estimate_prompt_tokens(self.request.messages, self.request.tools)

    def latency_ms(self) -> int:
        return max(0, round((time.monotonic() - self.started) * 1000))

    def charge(self, *, input_tokens: int, output_tokens: int) -> billing_services.ChargeResult | None:
        """Charge what the provider reported (or what was produced), never more than the hold; once
        (None if the call was settled already: a stream's steps run one after another, so a hang-up
        that follows the charge finds it settled). Settled once the charge has committed: a charge
        that fails leaves the call open, so that `release` gives its hold back."""
        if self.settled:
            return None
        charged = billing_services.charge(
            user=self.user,
            price=self.price,
            provider=self.provider.name,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            latency_ms=self.latency_ms(),
            hold=self.hold,
            purpose=API,
            end_user=self.request.end_user,
        )
        self.settled = True
        return charged

    def charge_produced(self, *, produced: str, usage=None, why: str) -> billing_services.ChargeResult | None:
        """Charge a call whose answer was not delivered whole: the provider's usage if it came, else the
        prompt and what was produced by the counting rule (output capped at max_tokens), capped at the hold.
        None if the call was settled already."""
        if self.settled:
            return None
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        else:
            input_tokens = self.prompt_tokens()
            output_tokens = min(count_tokens(produced), self.request.max_tokens)
        charged = self.charge(input_tokens=input_tokens, output_tokens=output_tokens)
        logger.warning(
            "gateway call not delivered whole",
            extra={
                "user_id": self.user.pk,
                "api_key_id": self.key.pk,
                "llm_call_id": charged.event.pk,
                "reason": why,
                "cost": str(charged.event.cost),
            },
        )
        return charged

    def failed(self, exc: ProviderError) -> None:
        """Record a failed call (no cost, no debit) and release its hold (once)."""
        if self.settled:
            return
        self.settled = True
        billing_services.record_failed_call(
            user=self.user,
            model=self.request.model,
            provider=self.provider.name,
            error=f"{type(exc).__name__}: {exc.reason}",
            latency_ms=self.latency_ms(),
            price=self.price,
            hold=self.hold,
            purpose=API,
        )
        logger.warning(
            "gateway provider failed",
            extra={"user_id": self.user.pk, "api_key_id": self.key.pk, "error": exc.reason},
        )

    def release(self) -> None:
        """Give the hold back (nothing was asked of the provider, or our own failure)."""
        if not self.settled:
            self.settled = True
            billing_services.release(hold=self.hold)

    def record_progress(self, *, produced: str = "", usage=None) -> None:
        """What the stream has used so far, on the hold, for the expiry to charge if this process dies."""
        if usage is not None:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
        else:
            input_tokens, output_tokens = self.prompt_tokens(), count_tokens(produced)
        billing_services.record_progress(
            hold=self.hold,
            price=self.price,
            provider=self.provider.name,
            purpose=API,
            input_tokens=input_tokens,
            output_tokens=min(output_tokens, self.request.max_tokens) if usage is None else output_tokens,
        )
