"""A turn as a loop of model calls, step by step, for any driver (a plain request or a stream).

`start()` reserves the first call (InsufficientCredits, 402, when enforcement refuses it). Then each
step: `next_call()` hands out the reserved call (reserving the next one from the second on) and says
what to send; the driver makes the call with no transaction open and no lock held (a streaming
driver records its progress on the call's hold meanwhile: `record_progress()`); then
`completed()` (or `failed()`, `release_open_call()`, `charge_undelivered()`). A call that asks for
tools is settled at once as its own LLMCallEvent, the tools run, and their results make the next
call (a `tool_followup`), at most LLM_MAX_TOOL_STEPS of them; the last one is offered no tools, so
it answers. `finish()` makes the summary call when the history is past LLM_CONTEXT_TOKENS
(sessions_app.summaries), then settles the answering call and the summary call, all or nothing,
with the turn's own rows (its messages, the turn, its calls in order, its tool runs: sessions_app.turn_rows).

Under enforcement a call that cannot be reserved ends the turn: InsufficientCredits (402) when it is
the first, else the turn completes with what it has and says so (`stop_reason` and a note in the
reply). A provider failure on the first call is re-raised (502/504, nothing charged, no messages);
on a follow-up the failed call is recorded and the turn completes with what it has. (A streamed call
that fails after the model wrote something is not a failed call: the streaming driver charges it
with `charge_undelivered`, sessions_app.streaming.)
"""

import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import services as billing_services
from billing.exceptions import PriceNotFound
from billing.models import CreditHold, LLMCallEvent, ModelPrice
from billing.selectors import active_model_names
from sessions_app import summaries
from sessions_app.models import ChatSession, Message, Turn
from sessions_app.providers import (
    ChatMessage,
    Completion,
    LLMProvider,
    ProviderError,
    count_tokens,
    estimate_prompt_tokens,
    get_provider,
)
from sessions_app.selectors import TurnContext
from sessions_app.summaries import SummaryCall
from sessions_app.tools import ToolContext, ToolRun, run_tool, tool_specs
from sessions_app.turn_rows import TurnText, built_turn, write_turn_rows
from sessions_app.turn_rows import after_charge as turn_rows_after_charge

logger = logging.getLogger(__name__)

Purpose = LLMCallEvent.Purpose
StopReason = Turn.StopReason
PART_SEPARATOR = "\n\n"  # between what the model wrote in one call and the next, in the reply
# Tool calls run from one model answer, at most (a model asking for more is told the rest were skipped).
MAX_TOOL_CALLS_PER_STEP = 8
STOP_NOTES = {
    StopReason.INSUFFICIENT_CREDITS: (
        "[The answer stops here: your credits ran out before the model could use the tool results. "
        "Top up your account and ask again.]"
    ),
    StopReason.PROVIDER_ERROR: (
        "[The answer stops here: the model provider failed while answering the tool results. "
        "Ask again in a moment.]"
    ),
    StopReason.TOOL_STEPS_EXHAUSTED: (
        "[The answer stops here: the model asked for more tool steps than one turn allows.]"
    ),
}


def refuse_unpriced(model: str, *, field: str | None = "model") -> PriceNotFound:
    """The 400 for a model with no active price, naming the models that have one."""
    choices = ", ".join(active_model_names()) or "none is priced yet; ask an operator"
    return PriceNotFound(
        f"The model {model!r} has no active price, so it cannot be used. Choose one of: {choices}.",
        field=field,
    )


class SessionGone(Exception):
    """The session was deleted while its reply was being generated (the calls are still metered)."""


@dataclass(frozen=True)
class TurnResult:
    turn: Turn  # with `call_events` and `tool_call_events` set, in order
    balance_after: Decimal


@dataclass
class ModelCall:
    """One reserved model call: what to send, and the hold that pays for it."""

    purpose: str
    messages: list[ChatMessage]
    tools: list[dict] | None  # None: no tools offered (the last follow-up must answer in text)
    hold: CreditHold
    max_output_tokens: int
    started: float = field(default_factory=time.monotonic)
    sent: bool = False  # the provider was asked (a streamed call: its stream was opened)

    def prompt_tokens(self) -> int:
        """The prompt by the counting rule: the messages and the tools offered (what the hold was sized on)."""
        return estimate_prompt_tokens(self.messages, self.tools)

    def provider_arguments(self, model: str) -> dict:
        """complete()'s keyword arguments for this call."""
        return {
            "model": model,
            "messages": self.messages,
            "max_output_tokens": self.max_output_tokens,
            "tools": self.tools,
        }


@dataclass(frozen=True)
class _Answer:
    call: ModelCall
    completion: Completion
    latency_ms: int


class TurnLoop:
    """One turn's model calls (see the module docstring); `run()` drives it with plain calls."""

    def __init__(
        self,
        *,
        session: ChatSession,
        user,
        content: str,
        context: TurnContext,
        price: ModelPrice,
        provider: LLMProvider | None = None,
    ):
        self.session, self.user, self.content, self.context = session, user, content, context
        # The price last seen, to size the first hold; the first reservation reads the active one,
        # which every call of the turn is charged at.
        self.price = price
        self.provider = provider or get_provider()
        self.messages: list[ChatMessage] = [
            *context.history,
            {"role": Message.Role.USER.value, "content": content},
        ]
        self.events: list[LLMCallEvent] = []  # every settled or failed call, in order
        self.tool_runs: list[ToolRun] = []
        self.followups = 0
        self.answer: _Answer | None = None
        self.stop_reason = StopReason.COMPLETE
        self.balance_after: Decimal | None = None
        self.said: list[str] = []  # what the model wrote alongside its tool calls, call by call
        self.done = False
        self.finished = False
        self.open_call: ModelCall | None = None  # reserved, neither answered nor failed yet
        self._reserved: ModelCall | None = None  # the first call, reserved by start()
        self.tool_context = ToolContext(user=user, session_id=session.pk)

    # --- the steps ------------------------------------------------------------------------------

    @property
    def first_call_pending(self) -> bool:
        """No call of this turn has been answered or recorded yet."""
        return not self.events and self.answer is None

    def start(self) -> None:
        """Reserve the first call; InsufficientCredits when enforcement refuses it (nothing written)."""
        self._reserved = self._reserve()

    def next_call(self) -> ModelCall | None:
        """The next call to make, reserved, or None when the turn has its answer (or stopped short)."""
        if self._reserved is not None:
            call, self._reserved = self._reserved, None
        else:
            call = self._reserve()
        if call is not None:
            call.started = time.monotonic()
        self.open_call = call
        return call

    def _reserve(self) -> ModelCall | None:
        """Reserve the next call, or None when the turn is done; refused: 402 on the first, else stop."""
        if self.done:
            return None
        first = self.first_call_pending
        tools = tool_specs() if self.followups < settings.LLM_MAX_TOOL_STEPS else None
        max_output_tokens = settings.LLM_MAX_OUTPUT_TOKENS
        # The worst case: the prompt (and the tools offered) by the counting rule, plus the output cap
        # (CallTooCostly, a 400, past what a call may hold). Under enforcement this one conditional
        # UPDATE is the gate, so a burst of turns cannot overdraw by more than one call.
        estimate = billing_services.hold_amount(
            price=self.price,
            input_tokens=estimate_prompt_tokens(self.messages, tools),
            output_tokens=max_output_tokens,
        )
        reservation = billing_services.reserve(
            user=self.user, amount=estimate, model=self.session.model if first else None
        )
        if first:
            if reservation.price is None:  # withdrawn since this process last read it
                if reservation.hold is not None:
                    billing_services.release(hold=reservation.hold)
                raise refuse_unpriced(self.session.model, field=None)
            self.price = reservation.price
        if reservation.refused:
            if first:  # the wallet under enforcement, or a spending cap (LimitReached)
                raise reservation.refusal()
            self.balance_after = reservation.balance
            self._stop(StopReason.INSUFFICIENT_CREDITS)
            return None
        return ModelCall(
            purpose=Purpose.CHAT if first else Purpose.TOOL_FOLLOWUP,
            messages=list(self.messages),
            tools=tools,
            hold=reservation.hold,
            max_output_tokens=max_output_tokens,
        )

    def completed(self, call: ModelCall, completion: Completion) -> None:
        """Take the model's answer: settle it and run the tools it asked for, or keep it as the turn's answer."""
        latency_ms = _elapsed_ms(call.started)
        if not (completion.tool_calls and call.tools):
            if completion.tool_calls:  # tools asked for when none were offered: the steps are spent
                self.stop_reason = StopReason.TOOL_STEPS_EXHAUSTED
            self.answer = _Answer(call=call, completion=completion, latency_ms=latency_ms)
            self.open_call, self.done = None, True
            return
        charged = billing_services.charge(
            user=self.user,
            price=self.price,
            provider=self.provider.name,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            latency_ms=latency_ms,
            occurred_at=timezone.now(),
            hold=call.hold,
            purpose=call.purpose,
        )
        self.open_call = None  # settled (a failed charge leaves it open, for release_open_call)
        self.events.append(charged.event)
        self.balance_after = charged.balance_after
        if completion.text:
            self.said.append(completion.text)
        requests = completion.tool_calls[:MAX_TOOL_CALLS_PER_STEP]
        self.messages.append(
            {
                "role": "assistant",
                "content": completion.text,
                "tool_calls": [request.as_message_item() for request in requests],
            }
        )
        for request in requests:  # no transaction open: each tool reads with its own queries
            run = run_tool(
                context=self.tool_context, call_id=request.id, name=request.name, arguments=request.arguments
            )
            self.tool_runs.append(run)
            self.messages.append({"role": "tool", "tool_call_id": request.id, "content": run.result})
        self.followups += 1

    def failed(self, call: ModelCall, exc: ProviderError) -> None:
        """Record a failed call (no debit, its hold released); re-raise when it was the turn's first."""
        self.open_call = None
        latency_ms = _elapsed_ms(call.started)
        event = billing_services.record_failed_call(
            user=self.user,
            model=self.session.model,
            provider=self.provider.name,
            error=f"{type(exc).__name__}: {exc.reason}",
            latency_ms=latency_ms,
            price=self.price,
            hold=call.hold,
            purpose=call.purpose,
        )
        logger.warning(
            "llm provider failed",
            extra={
                "user_id": self.user.pk,
                "session_id": self.session.pk,
                "provider": self.provider.name,
                "model": self.session.model,
                "purpose": call.purpose,
                "error": exc.reason,
                "latency_ms": latency_ms,
                "llm_call_id": event.pk,
            },
        )
        if self.first_call_pending:
            raise exc
        self.events.append(event)
        self._stop(StopReason.PROVIDER_ERROR)

    def release_open_call(self) -> None:
        """Give the open call's hold back (a bug, a worker shutdown): never wait for its expiry.

        The answer's too, when the turn failed to be written (its hold is settled only with the turn's
        rows): left open, a streamed answer's was charged at its expiry after the turn said it was not.
        """
        answer = self.answer.call if self.answer is not None else None
        for call in (self.open_call, self._reserved, answer):
            if call is not None:
                billing_services.release(hold=call.hold)
        self.open_call = self._reserved = None

    def record_progress(
        self,
        call: ModelCall,
        *,
        produced: str = "",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
    ) -> None:
        """Record on the call's hold what it has used so far, for the expiry to charge if this process dies.

        The provider's usage when it came, else the prompt and `produced` by the counting rule (as
        `charge_undelivered` counts them). One autocommit statement: call it with no transaction open.
        """
        if input_tokens is None or output_tokens is None:
            input_tokens, output_tokens = call.prompt_tokens(), count_tokens(produced)
        recorded = billing_services.record_progress(
            hold=call.hold,
            price=self.price,
            provider=self.provider.name,
            purpose=call.purpose,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )
        if not recorded:  # expired under a live call: its progress stopped for a whole TTL
            logger.warning(
                "stream progress on a closed hold",
                extra={"user_id": self.user.pk, "session_id": self.session.pk, "hold_id": call.hold.pk},
            )

    def charge_undelivered(
        self,
        *,
        produced: str = "",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        why: str,
    ) -> LLMCallEvent | None:
        """Charge what the model did for a turn that will not be written (a streamed turn whose client
        left, or whose provider failed mid-answer).

        The open call, with the provider's usage when it came, else the prompt (and the tools offered)
        and `produced` by the counting rule; or the answer not yet settled. Output capped at the
        reservation's cap and the cost at the call's hold; no turn rows. Earlier tool steps were
        settled already. None when nothing was open.
        """
        if self.finished:
            return None
        if self._reserved is not None or (self.open_call is not None and not self.open_call.sent):
            self.release_open_call()  # reserved but never sent: nothing to charge
            return None
        if self.open_call is not None:
            call, self.open_call = self.open_call, None
            if input_tokens is None or output_tokens is None:
                input_tokens, output_tokens = call.prompt_tokens(), count_tokens(produced)
        elif self.answer is not None:
            call, completion = self.answer.call, self.answer.completion
            input_tokens, output_tokens = completion.input_tokens, completion.output_tokens
            self.answer = None
        else:
            return None
        self.done = self.finished = True
        charged = billing_services.charge(
            user=self.user,
            price=self.price,
            provider=self.provider.name,
            input_tokens=input_tokens,
            output_tokens=min(output_tokens, call.max_output_tokens),
            latency_ms=_elapsed_ms(call.started),
            hold=call.hold,
            purpose=call.purpose,
        )
        logger.warning(
            "turn abandoned",
            extra={
                "user_id": self.user.pk,
                "session_id": self.session.pk,
                "llm_call_id": charged.event.pk,
                "reason": why,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "cost": str(charged.event.cost),
            },
        )
        return charged.event

    def finish(self, *, before_commit: Callable[[TurnResult], None] | None = None) -> TurnResult:
        """Summarize if due, then settle the answering and summary calls with the turn's rows, all or nothing.

        `before_commit(result)` runs inside that transaction once the turn is written.
        """
        self.finished = True
        reply = self.reply_text()
        summary_call = self._summary_call(reply)
        now = timezone.now()
        summary_event = None
        text = TurnText(
            session=self.session,
            prompt=self.content,
            reply=reply,
            stop_reason=self.stop_reason,
            now=now,
            tool_runs=tuple(self.tool_runs),
        )
        # The answering call's charge writes the turn's rows too, in its one statement, unless a
        # summary call is recorded after it (the turn's rows name that call too). That statement is
        # the whole write of a turn that records no key (`before_commit`): it then commits on its
        # own (billing.charge: no BEGIN or COMMIT round trip); else all share a transaction.
        rows_with_charge = self.answer is not None and summary_call is None
        one_statement = rows_with_charge and before_commit is None
        try:
            with nullcontext() if one_statement else transaction.atomic():
                if self.answer is not None:
                    answer = self.answer
                    charged = billing_services.charge(
                        user=self.user,
                        price=self.price,
                        provider=self.provider.name,
                        input_tokens=answer.completion.input_tokens,
                        output_tokens=answer.completion.output_tokens,
                        latency_ms=answer.latency_ms,
                        occurred_at=now,
                        hold=answer.call.hold,
                        purpose=answer.call.purpose,
                        then=turn_rows_after_charge(text, earlier_events=self.events)
                        if rows_with_charge
                        else None,
                    )
                    self.events.append(charged.event)
                    self.balance_after = charged.balance_after
                if rows_with_charge:
                    turn = built_turn(text, charged.then_row, events=self.events)
                if summary_call is not None:
                    summary_event, balance_after = summaries.record_summary_call(
                        call=summary_call,
                        user=self.user,
                        model=self.session.model,
                        price=self.price,
                        provider=self.provider,
                    )
                    self.events.append(summary_event)
                    if balance_after is not None:
                        self.balance_after = balance_after
                if not rows_with_charge:
                    turn = write_turn_rows(text, events=self.events)
                if turn is not None:
                    if summary_call is not None:
                        summaries.save_summary(session=self.session, call=summary_call, event=summary_event)
                    if before_commit is not None:
                        before_commit(TurnResult(turn=turn, balance_after=self.balance_after))
        except BaseException:
            # Nothing of the turn's write was kept (or it was, and a settled hold is left as it is):
            # give the holds back rather than wait for their expiry.
            for hold in (
                self.answer.call.hold if self.answer else None,
                summary_call.hold if summary_call else None,
            ):
                if hold is not None:
                    billing_services.release(hold=hold)
            raise
        if turn is None:
            # Deleted from another tab mid-call: the provider did the work, so the calls stay metered
            # and charged like any other; there is just no session left to keep the messages in.
            logger.warning(
                "session deleted during its turn",
                extra={
                    "user_id": self.user.pk,
                    "session_id": self.session.pk,
                    "llm_call_ids": [e.pk for e in self.events],
                },
            )
            raise SessionGone(self.session.pk)
        logger.info(
            "turn charged",
            extra={
                "user_id": self.user.pk,
                "session_id": self.session.pk,
                "turn_id": turn.pk,
                "llm_call_ids": [e.pk for e in self.events],
                "tool_calls": len(self.tool_runs),
                "stop_reason": self.stop_reason,
                "cost": str(sum((e.cost for e in self.events), Decimal(0))),
                "balance_after": str(self.balance_after),
            },
        )
        return TurnResult(turn=turn, balance_after=self.balance_after)

    def _summary_call(self, reply: str) -> SummaryCall | None:
        """The summary call, made now (no transaction open) when the history is past LLM_CONTEXT_TOKENS."""
        plan = summaries.plan_summary(context=self.context, content=self.content, reply=reply)
        if plan is None:
            return None
        return summaries.make_summary_call(
            plan=plan, user=self.user, model=self.session.model, price=self.price, provider=self.provider
        )

    def reply_text(self) -> str:
        """The assistant's message: all the model wrote (calls apart by a blank line), and a note when the turn stopped short.

        A streamed turn sends the same text as its deltas (sessions_app.streaming).
        """
        parts = [*self.said, self.answer.completion.text if self.answer is not None else ""]
        text = PART_SEPARATOR.join(part for part in parts if part)
        if self.stop_reason == StopReason.COMPLETE:
            return text
        return (
            f"{text}{PART_SEPARATOR}{STOP_NOTES[self.stop_reason]}" if text else STOP_NOTES[self.stop_reason]
        )

    def run(self, *, before_commit: Callable[[TurnResult], None] | None = None) -> TurnResult:
        """The plain driver: each call made with `complete()`, then the turn written (after start())."""
        try:
            while (call := self.next_call()) is not None:
                try:
                    call.sent = True
                    completion = self.provider.complete(**call.provider_arguments(self.session.model))
                except ProviderError as exc:
                    self.failed(call, exc)  # re-raised when it was the first call
                    continue
                self.completed(call, completion)
        except ProviderError:
            raise
        except BaseException:
            # Anything unexpected (a bug, a worker shutdown): give the hold back rather than wait for expiry.
            self.release_open_call()
            raise
        try:
            return self.finish(before_commit=before_commit)
        except BaseException:
            self.release_open_call()  # the turn was not written: its answer's hold goes back at once
            raise

    def _stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.done = True


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.monotonic() - started) * 1000))
