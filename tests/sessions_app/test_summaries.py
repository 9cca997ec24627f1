"""Session summaries: past LLM_CONTEXT_TOKENS a billed summary call stands in for the older history."""

from decimal import Decimal

import pytest

from billing.models import CreditHold, CreditTransaction, LLMCallEvent, ModelPrice, Wallet
from billing.reconcile import check_ledger
from billing.services import charge
from sessions_app.models import ChatSession, SessionSummary
from sessions_app.providers import EchoProvider, ProviderTimeout
from sessions_app.summaries import INSTRUCTIONS, fallback_summary
from tests.factories import ChatSessionFactory, fund

pytestmark = pytest.mark.django_db

LONG = "We talked about the spring offsite venue, the dates and the catering budget. " * 4  # ~80 tokens


class Recorder(EchoProvider):
    """The echo model, remembering what each call was sent."""

    sent: list = []

    def complete(self, *, model, messages, max_output_tokens, tools=None):
        Recorder.sent.append(list(messages))
        return super().complete(
            model=model, messages=messages, max_output_tokens=max_output_tokens, tools=tools
        )


class SummaryDown(Recorder):
    def complete(self, *, model, messages, max_output_tokens, tools=None):
        if messages and messages[0]["content"] == INSTRUCTIONS:
            raise ProviderTimeout("no answer within 30s")
        return super().complete(
            model=model, messages=messages, max_output_tokens=max_output_tokens, tools=tools
        )


@pytest.fixture
def session(user, settings, monkeypatch):
    settings.LLM_CONTEXT_TOKENS = 200
    Recorder.sent = []
    monkeypatch.setattr("sessions_app.services.get_provider", Recorder)
    fund(user)
    return ChatSessionFactory(owner=user)


def take(client, session, content):
    response = client.post(f"/api/v1/sessions/{session.pk}/turns/", {"content": content}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def test_past_the_context_budget_the_older_turns_are_summarized_by_a_billed_call(user_client, session):
    first = take(user_client, session, LONG)
    assert [c["purpose"] for c in first["usage"]["calls"]] == ["chat"]  # one turn: nothing older yet
    assert user_client.get(f"/api/v1/sessions/{session.pk}/").json()["summary"] is None

    second = take(user_client, session, LONG)

    calls = second["usage"]["calls"]
    assert [c["purpose"] for c in calls] == ["chat", "summary"]
    assert Decimal(calls[1]["cost"]) > 0 and calls[1]["used_fallback"] is False
    assert Decimal(second["usage"]["cost"]) == sum(Decimal(c["cost"]) for c in calls)
    debits = CreditTransaction.objects.filter(kind="debit", llm_call_id__in=[c["id"] for c in calls])
    assert -sum(debits.values_list("amount", flat=True)) == Decimal(second["usage"]["cost"])
    summary = user_client.get(f"/api/v1/sessions/{session.pk}/").json()["summary"]
    assert summary["covers_turns"] == 1 and summary["used_fallback"] is False
    assert summary["text"].startswith("Echo: ")  # the echo model's answer to the summary prompt
    # The summary call was sent the older turn, not this one.
    summary_prompt = Recorder.sent[-1]
    assert summary_prompt[0]["content"] == INSTRUCTIONS
    assert LONG[:100] in summary_prompt[1]["content"]

    take(user_client, session, "And now?")

    # The next prompt has the summary instead of the first turn's messages.
    prompt = Recorder.sent[2] if Recorder.sent[2][0]["content"] != INSTRUCTIONS else Recorder.sent[3]
    assert prompt[0]["role"] == "system" and prompt[0]["content"].startswith("Summary of the first 1 turns")
    assert [m["role"] for m in prompt[1:]] == ["user", "assistant", "user"]
    assert prompt[-1]["content"] == "And now?"
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok


def test_a_failed_summary_call_uses_the_fallback_costs_nothing_and_is_counted(
    user_client, staff_client, session, monkeypatch
):
    monkeypatch.setattr("sessions_app.services.get_provider", SummaryDown)
    take(user_client, session, LONG)

    second = take(user_client, session, LONG)

    chat, summary_call = second["usage"]["calls"]
    assert summary_call["purpose"] == "summary"
    assert (summary_call["cost"], summary_call["used_fallback"]) == ("0.000000", True)
    event = LLMCallEvent.objects.get(pk=summary_call["id"])
    assert (event.status, event.used_fallback, event.cost, event.purpose) == ("error", True, 0, "summary")
    assert second["usage"]["cost"] == chat["cost"]
    summary = user_client.get(f"/api/v1/sessions/{session.pk}/").json()["summary"]
    assert summary["used_fallback"] is True and summary["covers_turns"] == 1
    assert summary["text"].startswith("user: We talked about the spring offsite venue")
    stored = SessionSummary.objects.get()
    assert stored.text == fallback_summary(
        previous="", older=[("user", LONG), ("assistant", f"Echo: {LONG}")]
    )
    # The usage summary counts it, in the totals and in its day.
    usage = staff_client.get("/api/v1/admin/usage/summary", {"bucket": "day"}).json()
    assert usage["summary_fallbacks"] == 1
    assert [row["summary_fallbacks"] for row in usage["daily"]] == [1]
    assert (
        staff_client.get("/api/v1/admin/usage/summary", {"user_id": session.owner_id}).json()[
            "summary_fallbacks"
        ]
        == 1
    )
    assert check_ledger().ok


def test_the_daily_usage_admin_page_shows_summary_fallbacks(admin_client, user_client, session, monkeypatch):
    monkeypatch.setattr("sessions_app.services.get_provider", SummaryDown)
    take(user_client, session, LONG)
    take(user_client, session, LONG)

    page = admin_client.get("/admin/reporting/dailyusage/").content.decode()

    assert "Summary fallbacks" in page


def test_a_summary_the_wallet_cannot_reserve_is_skipped(user_client, user, session, settings):
    settings.CREDIT_ENFORCEMENT_ENABLED = True
    take(user_client, session, LONG)
    # Spend down to a sliver: the next chat call is reserved (available > 0), its summary is not.
    price = ModelPrice.objects.get(model="echo-1")  # 1 credit per 1k input tokens
    left = Wallet.objects.get(user=user).balance - Decimal("0.000500")
    charge(user=user, price=price, provider="echo", input_tokens=int(left * 1000), output_tokens=0)

    second = take(user_client, session, LONG)

    assert [c["purpose"] for c in second["usage"]["calls"]] == ["chat"]
    assert ChatSession.objects.get(pk=session.pk).summary is None
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok


def test_a_summary_too_costly_to_hold_is_skipped_and_the_turn_kept(user_client, user, session, monkeypatch):
    from billing import services as billing_services
    from billing.exceptions import CallTooCostly
    from sessions_app.summaries import SUMMARY_MAX_OUTPUT_TOKENS

    hold_amount = billing_services.hold_amount

    def summary_too_costly(*, price, input_tokens, output_tokens):
        if output_tokens == SUMMARY_MAX_OUTPUT_TOKENS:  # the summary call's cap; a chat call's is 1024
            raise CallTooCostly(
                model=price.model,
                cost=None,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                input_price=price.input_price_per_1k,
                output_price=price.output_price_per_1k,
                limit=0,
            )
        return hold_amount(price=price, input_tokens=input_tokens, output_tokens=output_tokens)

    monkeypatch.setattr(billing_services, "hold_amount", summary_too_costly)
    take(user_client, session, LONG)

    second = take(user_client, session, LONG)

    assert [c["purpose"] for c in second["usage"]["calls"]] == ["chat"]
    assert ChatSession.objects.get(pk=session.pk).summary is None
    assert not CreditHold.objects.filter(status=CreditHold.Status.HELD).exists()
    assert check_ledger().ok


def test_deleting_a_summarized_session_keeps_its_calls_and_ledger(user_client, session):
    take(user_client, session, LONG)
    take(user_client, session, LONG)
    events = LLMCallEvent.objects.count()

    assert user_client.delete(f"/api/v1/sessions/{session.pk}/").status_code == 204

    assert not SessionSummary.objects.exists()
    assert LLMCallEvent.objects.count() == events == 3
    assert check_ledger().ok
