"""Session summaries: past LLM_CONTEXT_TOKENS, the older history is summarized by a billed model call.

Part of a turn's end (turn_loop.TurnLoop.finish): when the summary so far, the messages it does not
cover and this turn's two add up to more than LLM_CONTEXT_TOKENS, every message before this turn is
summarized (with the summary so far), and the new summary stands in for them in later prompts
(selectors.turn_context). The call is reserved and made before the turn's last transaction, and
recorded in it (`purpose: "summary"`, one of the turn's calls, in its usage). When it fails, a
deterministic summary is used instead and its event says `used_fallback: true` (cost 0), which the
usage summary counts. A reservation refused by enforcement (or too costly to hold) leaves the history
unsummarized for now.
"""

import logging
import math
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing import services as billing_services
from billing.exceptions import CallTooCostly
from billing.models import CreditHold, LLMCallEvent, ModelPrice
from sessions_app.models import ChatSession, Message, SessionSummary
from sessions_app.providers import (
    CHARS_PER_TOKEN,
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    count_tokens,
    estimate_prompt_tokens,
)
from sessions_app.selectors import TurnContext

logger = logging.getLogger(__name__)

SUMMARY_MAX_OUTPUT_TOKENS = 512
TRANSCRIPT_MESSAGE_CHARS = 2000  # of each message, in the summary call's prompt
TRANSCRIPT_MAX_CHARS = 48_000  # of the whole transcript (the most recent part kept)
FALLBACK_LINE_CHARS = 200  # of each message, in the fallback summary
FALLBACK_MAX_CHARS = 4000
INSTRUCTIONS = (
    "Summarize the conversation below for your own later reference. Keep names, numbers, decisions, "
    "open questions and what the user asked for. Plain sentences, at most 300 words."
)


@dataclass(frozen=True)
class SummaryPlan:
    previous: str
    older: list[tuple[str, str]]  # (role, content) of the messages to summarize, oldest first
    covers_messages: int  # messages with an order below this are covered by the new summary
    covered_chars: int  # their characters (the session's message_chars when it had just those)
    messages: list[ChatMessage]  # the summary call's prompt
    max_output_tokens: int


@dataclass
class SummaryCall:
    """A summary call made (reserved, then answered or failed), waiting to be recorded with the turn."""

    plan: SummaryPlan
    hold: CreditHold
    text: str
    completion: Completion | None  # None: the call failed and `text` is the fallback
    error: str
    latency_ms: int

    @property
    def used_fallback(self) -> bool:
        return self.completion is None


def history_tokens(*, context: TurnContext, content: str, reply: str) -> int:
    """The prompt history's tokens after this turn: the summary, the uncovered messages, this turn's two."""
    summary = count_tokens(context.summary.text) if context.summary else 0
    uncovered = math.ceil(context.uncovered_chars / CHARS_PER_TOKEN)
    return summary + uncovered + count_tokens(content) + count_tokens(reply)


def summary_prompt(*, previous: str, older: list[tuple[str, str]]) -> list[ChatMessage]:
    """The summary call's messages: the instructions, then the summary so far and the older messages."""
    parts = [f"Summary so far:\n{previous}"] if previous else []
    parts += [f"{role}: {content[:TRANSCRIPT_MESSAGE_CHARS]}" for role, content in older]
    transcript = "\n\n".join(parts)[-TRANSCRIPT_MAX_CHARS:]
    return [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": transcript}]


def fallback_summary(*, previous: str, older: list[tuple[str, str]]) -> str:
    """A summary made without a model: the summary so far and each message's opening words, the latest kept."""
    lines = [previous] if previous else []
    lines += [f"{role}: {_squash(content)[:FALLBACK_LINE_CHARS]}" for role, content in older]
    return "\n".join(lines)[-FALLBACK_MAX_CHARS:]


def plan_summary(*, context: TurnContext, content: str, reply: str) -> SummaryPlan | None:
    """What to summarize at the end of this turn, or None when the history still fits."""
    if history_tokens(context=context, content=content, reply=reply) <= settings.LLM_CONTEXT_TOKENS:
        return None
    start = context.summary.covers_messages if context.summary else 0
    end = context.session.message_count  # every message before this turn's two (read with message_chars)
    if end <= start:
        return None
    older = list(
        Message.objects.filter(session_id=context.session.pk, order__gte=start, order__lt=end)
        .order_by("order")
        .values_list("role", "content")
    )
    previous = context.summary.text if context.summary else ""
    return SummaryPlan(
        previous=previous,
        older=older,
        covers_messages=end,
        covered_chars=context.session.message_chars,
        messages=summary_prompt(previous=previous, older=older),
        max_output_tokens=min(settings.LLM_MAX_OUTPUT_TOKENS, SUMMARY_MAX_OUTPUT_TOKENS),
    )


def make_summary_call(
    *, plan: SummaryPlan, user, model: str, price: ModelPrice, provider: LLMProvider
) -> SummaryCall | None:
    """Reserve and make the summary call (no transaction open); None when enforcement refuses it, or when
    its worst case is more than a call may hold (the turn's answer is charged and kept either way)."""
    try:
        estimate = billing_services.hold_amount(
            price=price,
            input_tokens=estimate_prompt_tokens(plan.messages),
            output_tokens=plan.max_output_tokens,
        )
    except CallTooCostly:
        logger.warning("session summary skipped: too costly to hold", extra={"user_id": user.pk})
        return None
    reservation = billing_services.reserve(user=user, amount=estimate)
    if reservation.refused:
        logger.info("session summary skipped: insufficient credits", extra={"user_id": user.pk})
        return None
    started = time.monotonic()
    try:
        completion = provider.complete(
            model=model, messages=plan.messages, max_output_tokens=plan.max_output_tokens
        )
    except ProviderError as exc:
        return SummaryCall(
            plan=plan,
            hold=reservation.hold,
            text=fallback_summary(previous=plan.previous, older=plan.older),
            completion=None,
            error=f"{type(exc).__name__}: {exc.reason}",
            latency_ms=_elapsed_ms(started),
        )
    except BaseException:
        billing_services.release(hold=reservation.hold)
        raise
    return SummaryCall(
        plan=plan,
        hold=reservation.hold,
        # An empty answer is paid for (the provider did the work) but cannot stand in for the history.
        text=completion.text.strip() or fallback_summary(previous=plan.previous, older=plan.older),
        completion=completion,
        error="",
        latency_ms=_elapsed_ms(started),
    )


def record_summary_call(
    *, call: SummaryCall, user, model: str, price: ModelPrice, provider: LLMProvider
) -> tuple[LLMCallEvent, Decimal | None]:
    """Record the summary call: charged, or failed with its fallback (cost 0); in the caller's transaction.

    Returns the event and the balance after its debit (None when nothing was debited).
    """
    if call.completion is None:
        event = billing_services.record_failed_call(
            user=user,
            model=model,
            provider=provider.name,
            error=call.error,
            latency_ms=call.latency_ms,
            price=price,
            hold=call.hold,
            purpose=LLMCallEvent.Purpose.SUMMARY,
            used_fallback=True,
        )
        logger.warning(
            "session summary fell back",
            extra={"user_id": user.pk, "llm_call_id": event.pk, "error": call.error},
        )
        return event, None
    charged = billing_services.charge(
        user=user,
        price=price,
        provider=provider.name,
        input_tokens=call.completion.input_tokens,
        output_tokens=call.completion.output_tokens,
        latency_ms=call.latency_ms,
        occurred_at=timezone.now(),
        hold=call.hold,
        purpose=LLMCallEvent.Purpose.SUMMARY,
    )
    return charged.event, charged.balance_after


def save_summary(*, session: ChatSession, call: SummaryCall, event: LLMCallEvent) -> SessionSummary:
    """The summary row, made the session's current one unless a newer one covers more.

    In the turn's transaction, after its rows (the session row is locked by then).
    """
    covers = call.plan.covers_messages
    summary = SessionSummary.objects.create(
        session_id=session.pk,
        text=call.text,
        covers_turns=covers // 2,
        covers_messages=covers,
        covered_chars=call.plan.covered_chars,
        used_fallback=call.used_fallback or not (call.completion and call.completion.text.strip()),
        llm_call=event,
        created_at=timezone.now(),
    )
    ChatSession.objects.filter(pk=session.pk).filter(
        Q(summary__isnull=True) | Q(summary__covers_messages__lte=covers)
    ).update(summary=summary)
    logger.info(
        "session summarized",
        extra={"session_id": session.pk, "llm_call_id": event.pk, "covers_messages": covers},
    )
    return summary


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
