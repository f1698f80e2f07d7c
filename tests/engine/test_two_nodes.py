"""The engine works where work lands on another node: a two-node cluster on one machine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hypermetric.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_spreads_over_two_nodes(settings: Settings, env: dict[str, str]) -> None:
    env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.engine.two_nodes"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # ~5 s of driving in 50 units: the second node gets work even if its workers start late
    expected = {"state": "success", "scores": 1000, "nodes": 2, "cluster_nodes": 2}
    assert report == expected, done.stderr[-2000:]
