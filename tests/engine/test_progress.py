"""The progress bar, read from a pseudo-terminal as a user sees it.

One test feeds ``progress_display`` a sequence of progress values (no Ray); one runs
``hypermetric run`` on the session's Ray cluster with its output on a pty.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hypermetric.catalog.db import database
from hypermetric.catalog.runs import list_runs
from hypermetric.config import Settings
from hypermetric.engine.coordinator import Progress
from hypermetric.engine.progress import progress_display

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = 160
# a CSI sequence (colours, cursor moves, show/hide cursor) or an OSC one
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_BAR_LINE = re.compile(
    r"(?P<done>\d+)/(?P<total>\d+|\?) examples +(?P<rate>[\d,]+|-) scores/s +(?P<errors>\d+) errors"
)


class Terminal:
    """A pseudo-terminal of ``COLUMNS`` columns whose output a thread collects."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        size = struct.pack("HHHH", 40, COLUMNS, 0, 0)
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, size)
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the slave
                return
            if not data:
                return
            self._chunks.append(data)

    def close_slave(self) -> None:
        """Close this process's end of the slave, so the reader ends with the writers."""
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def text(self, timeout: float = 10.0) -> str:
        """Everything written, control sequences removed, once the writers closed."""
        self.close_slave()
        self._reader.join(timeout)
        os.close(self.master)
        raw = b"".join(self._chunks).decode("utf-8", "replace")
        return _ANSI.sub("", raw).replace("\r", "\n")


def bar_lines(text: str) -> list[dict[str, str]]:
    """Each drawn state of the bar, in order."""
    return [m.groupdict() for m in _BAR_LINE.finditer(text)]


@contextmanager
def stderr_on(terminal: Terminal, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    stream = open(os.dup(terminal.slave), "w", encoding="utf-8")  # noqa: SIM115
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("COLUMNS", str(COLUMNS))
    monkeypatch.setenv("TERM", "xterm-256color")
    try:
        yield
    finally:
        stream.close()


def test_the_bar_shows_done_of_total_scores_per_second_and_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    started = time.monotonic() - 4.0  # 4 s in: the rates below are exact to a few percent
    states = [
        Progress(examples_done=0, examples_total=1000, started=started),
        Progress(examples_done=250, examples_total=1000, scores=500, errors=1, started=started),
        Progress(examples_done=1000, examples_total=1000, scores=8000, errors=7, started=started),
    ]
    with stderr_on(terminal, monkeypatch), progress_display(True, "nightly") as update:
        assert update is not None  # a terminal: a bar is drawn
        for state in states:
            update(state)
            time.sleep(0.15)  # the bar redraws ten times a second
    lines = bar_lines(terminal.text())
    assert lines, "no progress bar was drawn"
    final = lines[-1]
    assert (final["done"], final["total"], final["errors"]) == ("1000", "1000", "7")
    assert 1800 <= int(final["rate"].replace(",", "")) <= 2000  # 8,000 scores in ~4 s
    assert {(line["done"], line["errors"]) for line in lines} >= {("250", "1"), ("1000", "7")}
    # before its first value the bar knows nothing yet ("0/? examples - scores/s")
    assert all(line["total"] == "1000" for line in lines if line["rate"] != "-")


def test_an_unknown_total_shows_a_question_mark_and_no_terminal_no_bar(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = Terminal()
    with stderr_on(terminal, monkeypatch), progress_display(True, "stream") as update:
        assert update is not None
        update(Progress(examples_done=40, scores=80))
    assert bar_lines(terminal.text())[-1]["total"] == "?"
    with progress_display(True, "piped", force_terminal=False) as update:
        assert update is None
    with stderr_on(Terminal(), monkeypatch), progress_display(False, "off") as update:
        assert update is None


@pytest.mark.ray
def test_hypermetric_run_on_a_terminal_shows_the_total(
    engine_settings: Settings, env: dict[str, str], ray_cluster: str
) -> None:
    terminal = Terminal()
    env = {**env, "RAY_ADDRESS": ray_cluster, "HYPERMETRIC_UNIT_SIZE": "25"}
    env.update(COLUMNS=str(COLUMNS), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "run", "tests.engine.sample:mixed_outputs"],
        cwd=ROOT,
        env=env,
        stdin=terminal.slave,
        stdout=terminal.slave,
        stderr=terminal.slave,
    )
    terminal.close_slave()
    try:
        assert proc.wait(timeout=240) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = terminal.text()
    (run,) = list_runs(database(), evaluation="engine-mixed")
    assert run.state == "success" and run.errors_count > 0
    lines = bar_lines(text)
    assert lines, text
    # every state the run reported knew the total; the last is the run, as its row has it
    assert {line["total"] for line in lines if line["rate"] != "-"} == {"200"}
    final = lines[-1]
    assert (final["done"], final["errors"]) == ("200", str(run.errors_count))
    assert int(final["rate"].replace(",", "")) > 0
    assert f"run {run.id} success: 200 examples" in text
