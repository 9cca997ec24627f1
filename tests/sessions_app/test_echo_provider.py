"""The echo provider and provider selection: deterministic, offline, with a documented token rule."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from sessions_app.providers import (
    EchoProvider,
    OpenAIProvider,
    count_tokens,
    estimate_prompt_tokens,
    get_provider,
)


@pytest.mark.parametrize(
    ("text", "tokens"), [("", 0), ("a", 1), ("abcd", 1), ("abcde", 2), ("x" * 4000, 1000)]
)
def test_count_tokens_is_one_per_started_four_characters(text, tokens):
    assert count_tokens(text) == tokens


def test_estimate_prompt_tokens_sums_each_message():
    messages = [{"role": "user", "content": "abcde"}, {"role": "assistant", "content": "abc"}]

    assert estimate_prompt_tokens(messages) == 3


def test_echo_answers_the_last_user_message_deterministically():
    messages = [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "Echo: first question"},
        {"role": "user", "content": "second one"},
    ]

    one = EchoProvider().complete(model="echo-1", messages=messages, max_output_tokens=100)
    two = EchoProvider().complete(model="echo-1", messages=messages, max_output_tokens=100)

    assert one == two
    assert one.text == "Echo: second one"
    assert one.input_tokens == estimate_prompt_tokens(messages) == 4 + 5 + 3
    assert one.output_tokens == count_tokens("Echo: second one") == 4


def test_echo_reply_respects_max_output_tokens():
    reply = EchoProvider().complete(
        model="echo-1", messages=[{"role": "user", "content": "z" * 500}], max_output_tokens=10
    )

    assert reply.output_tokens == 10
    assert len(reply.text) == 40


def test_provider_follows_the_setting():
    assert isinstance(get_provider(), EchoProvider)
    with override_settings(LLM_PROVIDER="openai"):
        assert isinstance(get_provider(), OpenAIProvider)


@override_settings(LLM_PROVIDER="carrier-pigeon")
def test_an_unknown_provider_is_a_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="carrier-pigeon"):
        get_provider()


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [
        ({"LLM_PROVIDER": "carrier-pigeon"}, "sessions_app.E001"),
        ({"LLM_TIMEOUT_SECONDS": 0}, "sessions_app.E002"),
        ({"LLM_MAX_OUTPUT_TOKENS": 0}, "sessions_app.E003"),
        ({"LLM_MAX_OUTPUT_TOKENS": 1_000_001}, "sessions_app.E003"),
        ({"STREAM_PROGRESS_INTERVAL_SECONDS": 0}, "sessions_app.E004"),
        ({"STREAM_PROGRESS_INTERVAL_SECONDS": 600, "CREDIT_HOLD_TTL_SECONDS": 600}, "sessions_app.E004"),
    ],
)
def test_system_checks_catch_llm_misconfiguration(overrides, check_id):
    from sessions_app.checks import check_llm_settings

    assert check_llm_settings() == []
    with override_settings(**overrides):
        assert [error.id for error in check_llm_settings()] == [check_id]
