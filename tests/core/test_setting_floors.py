"""System checks of the server's, HSTS's and the replica's numbers: none is below what it can mean."""

import pytest

from core.checks import check_server_floors


def test_the_defaults_pass():
    assert check_server_floors() == []


@pytest.mark.parametrize(
    ("name", "value", "ids"),
    [
        ("WEB_CONCURRENCY", 1, []),
        ("WEB_CONCURRENCY", 0, ["core.E003"]),  # uvicorn would run one process, quietly
        ("WEB_THREADS", 1, []),
        ("WEB_THREADS", 0, ["core.E003"]),  # no thread pool starts with none
        ("SECURE_HSTS_SECONDS", 0, []),  # no HSTS header (check --deploy warns about it)
        ("SECURE_HSTS_SECONDS", -1, ["core.E003"]),
        ("DATABASE_REPLICA_MAX_LAG", 0.0, []),
        ("DATABASE_REPLICA_MAX_LAG", -1.0, ["core.E003"]),
        ("DATABASE_REPLICA_MAX_LAG", float("nan"), ["core.E003"]),
        ("DATABASE_REPLICA_CHECK_SECONDS", 0.0, []),
        ("DATABASE_REPLICA_CHECK_SECONDS", -5.0, ["core.E003"]),
    ],
)
def test_the_check_says_when_a_server_setting_is_below_its_floor(settings, name, value, ids):
    setattr(settings, name, value)
    messages = check_server_floors()
    assert [message.id for message in messages] == ids
    assert all(message.msg.startswith(f"{name}=") for message in messages)
