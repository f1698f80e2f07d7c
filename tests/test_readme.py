"""Every command in README.md runs as written, in order, after the quickstart.

Shell lines that start with ``hypermetric`` run through the CLI runner in this process (one
Ray cluster); one marked ``# runs until stopped`` runs as a process that must start, work
and stop on SIGTERM. Python blocks run too: the module block is written where its first
comment says, the others are executed. ``pip``/``pytest`` lines are what CI itself runs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hypermetric.cli import cli
from hypermetric.config import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
LONG_RUNNING = "# runs until stopped"
#: what a long-running command prints once it is up (the scheduler, the web view)
READY = ("Ray head", "web view on http")


def blocks() -> list[tuple[str, str]]:
    """The fenced blocks of the README, in order: (language, text)."""
    return re.findall(r"```(\w+)\n(.*?)```", README, flags=re.S)


def shell_commands(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        for part in line.split("&&"):
            part = part.strip()
            if part.startswith("hypermetric ") or part.startswith("python scripts/"):
                out.append(part)
    return out


def test_the_readme_has_the_two_fresh_machine_commands_first() -> None:
    first, second = blocks()[:2]
    assert first[1].strip() == "pip install -e . && hypermetric quickstart"
    assert second[1].strip() == 'pip install -e ".[test]" && pytest'
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install --quiet -e ".[test]"' in ci and "\npytest" in ci


def _run_long(command: str, cwd: Path, env: dict[str, str]) -> None:
    """Start a long-running command, wait until it says it is up, stop it with SIGTERM."""
    args = shlex.split(command.split("#")[0])
    proc = subprocess.Popen(
        [sys.executable, "-m", "hypermetric", *args[1:]],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout or []], daemon=True).start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while not any(mark in line for line in seen for mark in READY):
            assert proc.poll() is None, f"{command!r} ended early: {''.join(seen)}"
            assert time.monotonic() < deadline, f"{command!r} never came up: {''.join(seen)}"
            with contextlib.suppress(queue.Empty):
                seen.append(lines.get(timeout=0.5))
        time.sleep(2)  # a few passes
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        assert proc.returncode == 0, "".join(seen)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.ray
@pytest.mark.slow
def test_every_readme_command_runs(
    settings: Settings,
    env: dict[str, str],
    ray_cluster: str,
    user_code_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {**env, "PYTHONPATH": str(user_code_dir)}
    runner = CliRunner()
    ran = []
    for language, text in blocks():
        if language == "python":
            header = text.splitlines()[0]
            if header.startswith("# ") and header.endswith(".py"):
                target = user_code_dir / header[2:]
                target.parent.mkdir(parents=True, exist_ok=True)
                (target.parent / "__init__.py").touch()
                target.write_text(text)
                importlib.invalidate_caches()
            else:
                exec(compile(text, "README.md", "exec"), {"__name__": "readme"})
            continue
        for command in shell_commands(text):
            if command.startswith("python scripts/"):
                script, *args = shlex.split(command)[1:]
                done = subprocess.run(
                    [sys.executable, str(ROOT / script), *args, "--help"],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                assert done.returncode == 0, (command, done.stderr)
            elif command.endswith(LONG_RUNNING):
                _run_long(command, tmp_path, env)
            else:
                result = runner.invoke(cli, shlex.split(command)[1:])
                assert result.exit_code == 0, (command, result.output)
            ran.append(command)
    assert any(c.startswith("hypermetric quickstart") for c in ran)
    assert len(ran) >= 25
