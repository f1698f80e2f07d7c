"""`hypermetric` in a project's folder imports the project's modules, as `python -m` would:
the README's `hypermetric run evals.qa:capitals` works with no PYTHONPATH set."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "hypermetric"

MODULE = """
import hypermetric as hm


def exact(output: str, gold: str) -> float:
    return float(output == gold)


@hm.component(evals=[exact])
def shout(text: str) -> str:
    return text.upper()


@hm.runtime(name="{name}", dataset=[{{"text": "a", "gold": "A"}}, {{"text": "b", "gold": "B"}}])
def loud(example: dict) -> str:
    return shout(example["text"])
"""


def _project(root: Path, name: str) -> Path:
    """A project folder holding ``evals/loud.py``, on no import path of this process."""
    folder = root / "project"
    (folder / "evals").mkdir(parents=True)
    (folder / "evals" / "__init__.py").touch()
    (folder / "evals" / "loud.py").write_text(MODULE.format(name=name))
    return folder


def _hypermetric(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert SCRIPT.is_file(), f"the installed script is missing: {SCRIPT}"
    env = {k: v for k, v in env.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_register_imports_a_module_of_the_working_directory(
    tmp_path: Path, env: dict[str, str]
) -> None:
    folder = _project(tmp_path, "loud-register")
    done = _hypermetric(["evals", "register", "evals.loud:loud"], folder, env)
    assert done.returncode == 0, done.stderr
    listed = _hypermetric(["evals", "list"], folder, env)
    assert "loud-register" in listed.stdout, listed.stdout + listed.stderr


def test_a_module_the_working_directory_does_not_hold_is_one_line(
    tmp_path: Path, env: dict[str, str]
) -> None:
    done = _hypermetric(["run", "evals.loud:loud"], tmp_path, env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "error: cannot import evals.loud:loud: ModuleNotFoundError: No module named 'evals'; "
        "check the module is importable from here (PYTHONPATH)"
    ]


@pytest.mark.ray
@pytest.mark.slow
def test_a_run_drives_and_scores_a_module_of_the_working_directory(
    tmp_path: Path, env: dict[str, str], ray_cluster: str
) -> None:
    folder = _project(tmp_path, "loud-run")
    done = _hypermetric(
        ["run", "evals.loud:loud", "--no-progress"], folder, {**env, "RAY_ADDRESS": ray_cluster}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "success: 2 examples, 2 scores, 0 errors" in done.stdout, done.stdout
