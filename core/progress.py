"""Progress of a long command, on a terminal only: `label: done/total (percent), rate/s`, redrawn in place.

Commands that run long (reconciliation, rebuilds, exports) take one: on a terminal it redraws one line
at most a few times a second and ends it with the totals and the time taken; when the stream is not
a terminal (a log file, CI, a pipe) it writes nothing at all, so logs keep only the command's result.
"""

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

    def advance(self, count: int = 1) -> None:
        """`count` more done; redraws when the last redraw is old enough."""
        self.done += count
        if self.shown and time.monotonic() - self._drawn_at >= REDRAW_SECONDS:
            self._draw()

    def finish(self) -> None:
        """The last redraw, with the time taken, and the line ended (nothing when not a terminal)."""
        if self.shown:
            self._draw(final=True)

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
        self._drawn_at = time.monotonic()
        text = f"\r\x1b[K{self.line(final=final)}" + ("\n" if final else "")
        if hasattr(self.stream, "style_func"):  # a command's OutputWrapper: it would end every write,
            self.stream.write(text, style_func=_plain, ending="")  # and stderr's draws in the error style
        else:
            self.stream.write(text)
        self.stream.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finish()
        return False


def _plain(text: str) -> str:
    return text


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
