"""Session summaries: past LLM_CONTEXT_TOKENS, the older history is summarized by a billed model call.

Run at the end of a turn (turn_loop.TurnLoop.finish): when the summary so far, the messages it does
not cover and this turn's two add up to more than LLM_CONTEXT_TOKENS, every message but this turn's
is summarized (with the summary so far), and the new summary stands in for them in later prompts
(selectors.turn_context). The call is reserved and billed like any other (`purpose: "summary"`) and
is one of the turn's calls. When it fails, a deterministic summary is used instead and its event says
`used_fallback: true` (cost 0), which the usage summary counts. A reservation refused by enforcement
simply leaves the history unsummarized for now.
"""

import logging
import math
import re
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from billing import services as billing_services
from billing.models import LLMCallEvent, ModelPrice
from sessions_app.models import ChatSession, Message, SessionSummary, Turn, TurnCall
from sessions_app.providers import (
    CHARS_PER_TOKEN,
    ChatMessage,
    LLMProvider,
    ProviderError,
    count_tokens,
    estimate_prompt_tokens,
)
from sessions_app.selectors import TurnContext

logger = logging.getLogger(__name__)

KEEP_RECENT_MESSAGES = 2  # the turn just taken stays verbatim
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
class Summarized:
    summary: SessionSummary | None  # None: the session was deleted meanwhile (the call is still metered)
    event: LLMCallEvent
    balance_after: Decimal | None  # None when nothing was debited (the fallback)


def history_tokens(*, context: TurnContext, turn: Turn) -> int:
    """The prompt history's tokens after this turn: the summary, the uncovered messages, this turn's two."""
    summary = count_tokens(context.summary.text) if context.summary else 0
    uncovered = math.ceil(context.uncovered_chars / CHARS_PER_TOKEN)
    this_turn = count_tokens(turn.user_message.content) + count_tokens(turn.assistant_message.content)
    return summary + uncovered + this_turn


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


def summarize_if_due(
    *, turn: Turn, user, context: TurnContext, price: ModelPrice, provider: LLMProvider
) -> Summarized | None:
    """Summarize the session's older history when it is past LLM_CONTEXT_TOKENS (see the module docstring)."""
    if history_tokens(context=context, turn=turn) <= settings.LLM_CONTEXT_TOKENS:
        return None
    session = turn.session
    start = context.summary.covers_messages if context.summary else 0
    end = session.message_count - KEEP_RECENT_MESSAGES
    if end <= start:
        return None
    older = list(
        Message.objects.filter(session_id=session.pk, order__gte=start, order__lt=end)
        .order_by("order")
        .values_list("role", "content")
    )
    previous = context.summary.text if context.summary else ""
    messages = summary_prompt(previous=previous, older=older)
    max_output_tokens = min(settings.LLM_MAX_OUTPUT_TOKENS, SUMMARY_MAX_OUTPUT_TOKENS)
    estimate = billing_services.compute_cost(
        price=price, input_tokens=estimate_prompt_tokens(messages), output_tokens=max_output_tokens
    )
    reservation = billing_services.reserve(user=user, amount=estimate)
    if reservation.refused:
        logger.info(
            "session summary skipped: insufficient credits",
            extra={"user_id": user.pk, "session_id": session.pk, "turn_id": turn.pk},
        )
        return None
    hold = reservation.hold
    started = time.monotonic()
    try:
        completion = provider.complete(
            model=session.model, messages=messages, max_output_tokens=max_output_tokens
        )
    except ProviderError as exc:
        latency_ms = _elapsed_ms(started)
        text = fallback_summary(previous=previous, older=older)
        with transaction.atomic():
            event = billing_services.record_failed_call(
                user=user,
                model=session.model,
                provider=provider.name,
                error=f"{type(exc).__name__}: {exc.reason}",
                latency_ms=latency_ms,
                price=price,
                hold=hold,
                purpose=LLMCallEvent.Purpose.SUMMARY,
                used_fallback=True,
            )
            summary = _save(turn=turn, event=event, text=text, covers_messages=end, used_fallback=True)
        logger.warning(
            "session summary fell back",
            extra={
                "user_id": user.pk,
                "session_id": session.pk,
                "llm_call_id": event.pk,
                "error": exc.reason,
            },
        )
        return Summarized(summary=summary, event=event, balance_after=None)
    except BaseException:
        billing_services.release(hold=hold)
        raise
    text = completion.text.strip()
    with transaction.atomic():
        charged = billing_services.charge(
            user=user,
            price=price,
            provider=provider.name,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            latency_ms=_elapsed_ms(started),
            occurred_at=timezone.now(),
            hold=hold,
            purpose=LLMCallEvent.Purpose.SUMMARY,
        )
        # An empty answer is paid for (the provider did the work) but cannot stand in for the history.
        summary = _save(
            turn=turn,
            event=charged.event,
            text=text or fallback_summary(previous=previous, older=older),
            covers_messages=end,
            used_fallback=not text,
        )
    logger.info(
        "session summarized",
        extra={"user_id": user.pk, "session_id": session.pk, "llm_call_id": charged.event.pk, "covers": end},
    )
    return Summarized(summary=summary, event=charged.event, balance_after=charged.balance_after)


def _save(
    *, turn: Turn, event: LLMCallEvent, text: str, covers_messages: int, used_fallback: bool
) -> SessionSummary | None:
    """The summary, made the session's current one unless a newer one covers more; linked to the turn.

    The caller holds the transaction (after billing's, which locked the wallet: the session row is
    locked second, the order the turn's rows take them in).
    """
    if not ChatSession.objects.select_for_update().filter(pk=turn.session_id).exists():
        return None  # deleted meanwhile: its turns are gone too, only the metered call stays
    summary = SessionSummary.objects.create(
        session_id=turn.session_id,
        text=text,
        covers_turns=covers_messages // 2,
        covers_messages=covers_messages,
        used_fallback=used_fallback,
        llm_call=event,
        created_at=timezone.now(),
    )
    ChatSession.objects.filter(pk=turn.session_id).filter(
        Q(summary__isnull=True) | Q(summary__covers_messages__lte=covers_messages)
    ).update(summary=summary)
    position = TurnCall.objects.filter(turn_id=turn.pk).count()
    TurnCall.objects.create(turn_id=turn.pk, llm_call=event, position=position)
    return summary


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
