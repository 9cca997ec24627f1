"""The served process hands the interpreter over every WEB_SWITCH_INTERVAL_MS (streams' pieces wait on it)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.checks import check_switch_interval

ROOT = Path(__file__).resolve().parent.parent


def served_switch_interval(**env: str) -> float:
    """sys.getswitchinterval() in a process that has loaded the entry point `make serve` runs."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", "import sys, config.asgi; print(sys.getswitchinterval())"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "SECRET_KEY": "not-a-secret", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout)


def test_the_served_process_switches_every_millisecond_unless_told():
    assert served_switch_interval() == pytest.approx(0.001)
    assert served_switch_interval(WEB_SWITCH_INTERVAL_MS="2.5") == pytest.approx(0.0025)
    # Python's own default, which the tests' process keeps: only the served process changes it.
    assert sys.getswitchinterval() == pytest.approx(0.005)


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf")])
def test_an_interval_the_interpreter_refuses_is_refused_at_start_up(settings, value):
    assert check_switch_interval() == []
    settings.WEB_SWITCH_INTERVAL_MS = value

    (error,) = check_switch_interval()

    assert error.id == "core.E002"
    assert "WEB_SWITCH_INTERVAL_MS must be a positive number of milliseconds" in error.msg
