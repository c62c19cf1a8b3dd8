"""lakehouse.progress: a bar redrawn in place on a terminal, a few plain lines elsewhere."""

from __future__ import annotations

import io

from lakehouse.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_terminal_gets_one_bar_redrawn_in_place():
    out, clock = io.StringIO(), Clock()
    bar = Progress("building corpus w", total=2000, unit="rows", out=out, tty=True, clock=clock)
    for done in range(0, 2001, 100):
        clock.now += 0.2
        bar.update(done)
    text = out.getvalue()
    assert "\n" not in text  # nothing scrolls
    frames = text.split("\r\033[K")[1:]
    assert len(frames) == 21
    assert frames[10] == "building corpus w [###############---------------] 1,000/2,000 rows  50%  2.2 s"
    assert frames[-1].startswith("building corpus w [" + "#" * 30 + "] 2,000/2,000 rows 100%")
    bar.close("built corpus w")
    assert out.getvalue().endswith("\r\033[Kbuilt corpus w\n")


def test_a_terminal_is_not_redrawn_faster_than_min_interval():
    out, clock = io.StringIO(), Clock()
    bar = Progress("x", total=10, out=out, tty=True, clock=clock, min_interval=0.5)
    for done in range(10):
        clock.now += 0.1
        bar.update(done)
    assert out.getvalue().count("\r\033[K") == 2  # at 0.1 s and 0.6 s


def test_elsewhere_plain_lines_at_each_tenth_and_no_escape_codes():
    out, clock = io.StringIO(), Clock()
    bar = Progress("building corpus w", out=out, tty=False, unit="rows", clock=clock)
    bar.update(0, 1000)
    for done in range(1, 1001):
        bar.update(done, note="1 batch(es) failed" if done > 900 else "")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\033" not in out.getvalue() and "\r" not in out.getvalue()
    assert len(lines) == 11  # 0%, 10%, ..., 100%
    assert lines[0].startswith("building corpus w [") and " 0/1,000 rows   0%" in lines[0]
    assert lines[-1].endswith("1 batch(es) failed") and "1,000/1,000 rows 100%" in lines[-1]


def test_without_a_total_plain_lines_come_every_so_often():
    out, clock = io.StringIO(), Clock()
    bar = Progress("reading", out=out, tty=False, clock=clock, plain_every=10.0)
    for done in range(100):
        clock.now += 1.0
        bar.update(done * 10)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10 and lines[0] == "reading: 90  10.0 s"
    assert bar.line() == "reading: 990  1 min 40 s"
