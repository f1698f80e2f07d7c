"""``hypermetric ui`` as a user starts it: a process that serves until SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from click.testing import CliRunner

from hypermetric.cli import cli
from hypermetric.config import Settings
from tests.query.conftest import Runs
from tests.ui.conftest import make_run


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_hypermetric_ui_serves_the_history_until_stopped(
    runs: Runs, settings: Settings, env: dict[str, str]
) -> None:
    run_id = make_run(runs, "qa", "v1", [1.0, 0.0])
    port = _free_port()
    env = {k: v for k, v in env.items() if k != "HYPERMETRIC_UI_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", "ui", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = proc.stdout.readline() if proc.stdout else ""
        assert f"http://127.0.0.1:{port}/" in first and "read-only" in first, first
        deadline = time.monotonic() + 30
        while True:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/api/grid")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "never served"
                time.sleep(0.1)
        assert status == 200
        cells = [c for r in json.loads(body)["rows"] for c in r["cells"] if c]
        assert [c["run_id"] for c in cells] == [run_id]
        # another name for this machine's address is refused: no DNS rebinding
        status, _ = _get(f"http://127.0.0.1:{port}/api/grid", {"Host": "evil.example"})
        assert status == 400
        busy = CliRunner().invoke(cli, ["ui", "--port", str(port)])
        assert busy.exit_code == 1
        assert busy.output.startswith(f"error: cannot listen on 127.0.0.1:{port}")
        assert "--port" in busy.output and len(busy.output.strip().splitlines()) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0  # a stop asked for is no failure


def test_hypermetric_ui_says_what_it_serves() -> None:
    result = CliRunner().invoke(cli, ["ui", "--help"])
    assert result.exit_code == 0 and "HYPERMETRIC_UI_TOKEN" in result.output
    assert "--port" in result.output and "8765" in result.output
    bad = CliRunner().invoke(cli, ["ui", "--port", "70000"])
    assert bad.exit_code == 2 and "70000" in bad.output
