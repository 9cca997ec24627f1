"""Progress of a long command: shown on a terminal (done/total and rate), nothing in logs or CI."""

import io
import logging

from django.core.management import call_command

from core.progress import Progress
from tests.factories import UserFactory, fund


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_counts_toward_the_total_with_a_rate_and_ends_its_line():
    out = Terminal()
    with Progress(out, "wallets checked", total=4) as progress:
        for _ in range(4):
            progress.advance()
    text = out.getvalue()
    assert text.startswith("\r") and text.endswith("\n")
    last = text.rsplit("\r", 1)[1]
    assert "wallets checked: 4/4 (100%)" in last and "/s" in last and " s\n" in last


def test_a_log_record_written_to_the_terminal_meanwhile_gets_a_line_of_its_own():
    # It was appended to the progress line: "rebuild steps done: 1/11 (9%)23:03:42 INFO ...".
    terminal = Terminal()  # the terminal both the progress and the log handler write to
    handler = logging.StreamHandler(terminal)
    logging.getLogger().addHandler(handler)
    try:
        with Progress(terminal, "steps done", total=2, rate=False) as progress:
            progress.advance()
            logging.getLogger("tests.progress").warning("a step said something")
            progress.advance()
    finally:
        logging.getLogger().removeHandler(handler)

    text = terminal.getvalue()
    # The line wiped, the record on a line of its own, the progress drawn again below it.
    assert "steps done: 1/2 (50%)\r\x1b[Ka step said something\n\r\x1b[Ksteps done: 2/2 (100%)" in text
    assert handler.filters == []  # nothing left on the handler once the command is done


def test_progress_writes_nothing_where_the_stream_is_not_a_terminal():
    out = io.StringIO()  # a pipe, a log file, CI
    with Progress(out, "rows exported", total=10) as progress:
        progress.advance(10)
    assert out.getvalue() == ""


def test_progress_without_a_total_or_a_rate():
    out = io.StringIO()
    progress = Progress(out, "steps", rate=False, force=True)
    progress.advance(3)
    assert progress.line() == "steps: 3"
    progress.total = 6
    assert progress.line() == "steps: 3/6 (50%)"


def test_check_ledger_shows_its_progress_on_a_terminal_and_is_quiet_otherwise(db):
    for _ in range(3):
        fund(UserFactory(), "1")
    terminal, piped, out = Terminal(), io.StringIO(), io.StringIO()

    call_command("check_ledger", stdout=out, stderr=terminal)
    call_command("check_ledger", stdout=io.StringIO(), stderr=piped)

    assert "wallets checked: " in terminal.getvalue() and "(100%)" in terminal.getvalue()
    assert piped.getvalue() == ""
    assert "ledger is consistent" in out.getvalue()
