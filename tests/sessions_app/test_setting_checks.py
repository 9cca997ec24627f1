"""System checks of the conversation's settings: files, tool steps and history kept are not below their floors."""

import pytest

from sessions_app.checks import check_conversation_floors


def test_the_defaults_pass():
    assert check_conversation_floors() == []


@pytest.mark.parametrize(
    ("name", "value", "ids"),
    [
        ("FILE_MAX_BYTES", 1, []),
        ("FILE_MAX_BYTES", 0, ["sessions_app.E005"]),
        ("FILE_MAX_BYTES", -1, ["sessions_app.E005"]),
        ("FILE_QUOTA_BYTES", 1, []),
        ("FILE_QUOTA_BYTES", 0, ["sessions_app.E005"]),  # every upload refused as over a quota of nothing
        ("LLM_MAX_TOOL_STEPS", 0, []),  # no tools offered: documented
        ("LLM_MAX_TOOL_STEPS", -1, ["sessions_app.E005"]),
        ("LLM_CONTEXT_TOKENS", 1, []),
        ("LLM_CONTEXT_TOKENS", 0, ["sessions_app.E005"]),  # every turn would pay for a summary
        ("LLM_CONTEXT_TOKENS", -1, ["sessions_app.E005"]),
    ],
)
def test_the_check_says_when_a_conversation_setting_is_below_its_floor(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_conversation_floors()
    assert [message.id for message in messages] == ids
    assert all(message.msg.startswith(f"{name}={value} is below") for message in messages)
