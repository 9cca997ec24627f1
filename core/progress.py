"""Progress of a long command, on a terminal only: `label: done/total (percent), rate/s`, redrawn in place.

Commands that run long (reconciliation, rebuilds, exports) take one: on a terminal it redraws one line
at most a few times a second and ends it with the totals and the time taken; when the stream is not
a terminal (a log file, CI, a pipe) it writes nothing at all, so logs keep only the command's result.
A log record written to a terminal meanwhile gets a line of its own: the progress line is wiped
first, and drawn again below it at the next step.
"""

import logging
import time
from typing import TextIO

REDRAW_SECONDS = 0.2  # at most five redraws a second: the terminal never slows the work


class Progress:
    """Count work done toward `total` (None: unknown) and show it on `stream` when that is a terminal
    (`force`: whatever the stream is, for tests); `rate=False` leaves the rate out (a few long steps)."""

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        total: int | None = None,
        unit: str = "",
        rate: bool = True,
        force: bool | None = None,
    ):
        self.stream, self.label, self.total, self.unit, self.rate = stream, label, total, unit, rate
        self.shown = force if force is not None else _is_terminal(stream)
        self.done = 0
        self.started = time.monotonic()
        self._drawn_at = 0.0
        self._line_open = False  # a progress line is on the terminal, not yet ended
        self._guard = _WipeBeforeLogRecord(self)
        self._guarded: list[logging.Handler] = []

    def advance(self, count: int = 1) -> None:
        """`count` more done; redraws when the last redraw is old enough."""
        self.done += count
        if self.shown and time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._draw()

    def finish(self) -> None:
        """The last redraw, with the time taken, and the line ended (nothing when not a terminal)."""
        if self.shown:
            self._draw(final=True)
        for handler in self._guarded:
            handler.removeFilter(self._guard)
        self._guarded = []

    def wipe(self) -> None:
        """Clear the unfinished progress line, so that what is written next starts a line of its own."""
        if self._line_open:
            self._write("\r\x1b[K")
            self._line_open = False
            self._drawn_at = 0.0  # drawn again at the next step, below what was written

    def line(self, *, final: bool = False) -> str:
        """What is shown: `label: done/total (pct%), rate/s` (and the seconds taken, at the end)."""
        elapsed = max(time.monotonic() - self.started, 1e-9)
        unit = f" {self.unit}" if self.unit else ""
        if self.total:
            counted = f"{self.done:,}/{self.total:,}{unit} ({min(self.done / self.total, 1):.0%})"
        else:
            counted = f"{self.done:,}{unit}"
        text = f"{self.label}: {counted}" + (f", {self.done / elapsed:,.0f}/s" if self.rate else "")
        return f"{text}, {elapsed:.1f} s" if final else text

    def _draw(self, *, final: bool = False) -> None:
        if not self._guarded and not final:
            self._guard_log_handlers()
        self._drawn_at = time.monotonic()
        self._write(f"\r\x1b[K{self.line(final=final)}" + ("\n" if final else ""))
        self._line_open = not final

    def _write(self, text: str) -> None:
        if hasattr(self.stream, "style_func"):  # a command's OutputWrapper: it would end every write,
            self.stream.write(text, style_func=_plain, ending="")  # and stderr's draws in the error style
        else:
            self.stream.write(text)
        self.stream.flush()

    def _guard_log_handlers(self) -> None:
        """Wipe the line before each record the logging handlers write to a terminal (else a record was
        appended to it: `rebuild steps done: 1/11 (9%)23:03:42 INFO ...`)."""
        for handler in logging.getLogger().handlers:
            if _is_terminal(getattr(handler, "stream", None)) and self._guard not in handler.filters:
                handler.addFilter(self._guard)
                self._guarded.append(handler)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False


class _WipeBeforeLogRecord(logging.Filter):
    """A handler's filter that lets every record through, wiping the progress line before it is written."""

    def __init__(self, progress: Progress):
        super().__init__()
        self.progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self.progress.wipe()
        return True


def _plain(text: str) -> str:
    return text


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
