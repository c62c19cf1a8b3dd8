"""Progress of a long command: a bar on a terminal, a few plain lines anywhere else.

    bar = Progress("building corpus workers", total=2000, unit="rows")
    bar.update(512)        # terminal: "\\r\\033[K... [#####-----]   512/2,000 rows  25%  1.2 s"
    bar.close("built")     # the bar is replaced by one final line

On a terminal (``out.isatty()``) the bar is redrawn in place, at most every ``min_interval``
seconds. Elsewhere (a pipe, a log file, CI) escape codes would be noise: a plain line is
written at each tenth of the total (or every ``plain_every`` seconds when the total is
unknown), so a log shows the job moving without a line per update.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]

BAR_WIDTH = 30


def _fmt_elapsed(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs:02d} s"


class Progress:
    """A progress display for ``label``; ``total`` may be unknown (None) or set later."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        unit: str = "",
        out: TextIO | None = None,
        tty: bool | None = None,
        min_interval: float = 0.1,
        plain_every: float = 10.0,
        clock=time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.unit = unit
        self.out = sys.stderr if out is None else out
        if tty is None:
            tty = bool(getattr(self.out, "isatty", lambda: False)())
        self.tty = tty
        self.min_interval = min_interval
        self.plain_every = plain_every
        self._clock = clock
        self.started = clock()
        self.done = 0
        self._drawn_at = -1.0
        self._plain_step = -1  # the last tenth written as a plain line
        self._plain_at = self.started
        self._showing = False

    def _count(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        if self.total is None:
            return f"{self.done:,}{unit}"
        return f"{self.done:,}/{self.total:,}{unit}"

    def line(self, note: str = "") -> str:
        """The bar as text (without the terminal's control codes)."""
        elapsed = _fmt_elapsed(self._clock() - self.started)
        extra = f"  {note}" if note else ""
        if not self.total:
            return f"{self.label}: {self._count()}  {elapsed}{extra}"
        frac = min(1.0, max(0.0, self.done / self.total))
        filled = int(frac * BAR_WIDTH)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {self._count()} {frac:4.0%}  {elapsed}{extra}"

    def update(self, done: int, total: int | None = None, note: str = "") -> None:
        """Record progress (``done`` so far, out of ``total`` when it becomes known)."""
        self.done = done
        if total is not None:
            self.total = total
        now = self._clock()
        if self.tty:
            if now - self._drawn_at >= self.min_interval:
                self.out.write("\r\033[K" + self.line(note))
                self.out.flush()
                self._drawn_at = now
                self._showing = True
            return
        if self.total:
            step = min(10, int(10 * done / self.total))
            if step > self._plain_step:
                self._plain_step = step
                self.out.write(self.line(note) + "\n")
                self.out.flush()
        elif now - self._plain_at >= self.plain_every:
            self._plain_at = now
            self.out.write(self.line(note) + "\n")
            self.out.flush()

    def close(self, text: str | None = None) -> None:
        """Remove the bar (terminal) and write ``text``, if any, as the final line."""
        if self.tty and self._showing:
            self.out.write("\r\033[K")
            self._showing = False
        if text:
            self.out.write(text + "\n")
        self.out.flush()
