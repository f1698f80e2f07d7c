"""A regular (non-editable) install carries its migrations: `db upgrade` works anywhere."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_migrations_and_upgrades_a_db(tmp_path: Path) -> None:
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    wheel = next(tmp_path.glob("hypermetric-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "hypermetric/_migrations/env.py" in names
    assert any(n.startswith("hypermetric/_migrations/versions/0003") for n in names)
    # the web view's templates and hand-written JavaScript and CSS: no build step
    assert {"hypermetric/ui/templates/base.html", "hypermetric/ui/static/app.js"} <= set(names)
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {
        "PYTHONPATH": str(target),
        "HYPERMETRIC_HOME": str(workdir / "home"),
        "PATH": "/usr/bin:/bin",
    }
    probe = subprocess.run(
        [sys.executable, "-c", "import hypermetric, sys; print(hypermetric.__file__)"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.startswith(str(target))
    done = subprocess.run(
        [sys.executable, "-m", "hypermetric", "db", "upgrade"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "metadata DB at 0006" in done.stdout
