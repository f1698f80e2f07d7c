"""Ray connections: one per process, to RAY_ADDRESS or a local cluster started once."""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from hypermetric.config import get_settings
from hypermetric.errors import EngineError

__all__ = ["connect", "start_local_head", "stop_local_head", "worker_paths"]

_lock = threading.Lock()
_TOKEN_NOTE = "ray._private.authentication.authentication_token_setup"


@functools.cache
def _fresh_paths() -> frozenset[str]:
    """The import paths a fresh interpreter of this executable and environment has without
    a PYTHONPATH (asked once per process, when it connects): the workers of a cluster
    started elsewhere do not have this process's."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    paths = json.loads(probe.stdout) if probe.returncode == 0 else []
    return frozenset(os.path.abspath(p or os.getcwd()) for p in paths)


def worker_paths() -> list[str]:
    """Import paths this process has that a fresh worker would not (pytest's root, a
    ``FILE.py:NAME`` target's folder...): the actors of its runs put them in front of theirs
    before any user code reaches them, so they import user modules as this process did.

    A fresh interpreter of the same executable and environment already has the rest, and
    Ray adds the working directory and the script's (and its own folders, which ``import
    ray`` puts on the path of every process). The actors are handed the paths rather than
    the job a PYTHONPATH in its runtime environment: such a job cannot use the worker
    processes Ray starts in advance, and a process's first run would wait most of a second
    for new ones.
    """
    import ray

    script_dir = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    known = _fresh_paths() | {os.getcwd(), script_dir}
    ray_dir = os.path.dirname(os.path.abspath(ray.__file__)) + os.sep
    extra: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.getcwd())
        if path.startswith(ray_dir) or path in known or path in extra:
            continue
        if os.path.isdir(path):
            extra.append(path)
    return extra


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Connect this process to Ray: ``address``, else RAY_ADDRESS, else a new local cluster.

    Idempotent: a process that is connected already stays on its cluster (a process never
    starts a second local cluster).
    """
    import ray

    with _lock:
        if ray.is_initialized():
            return
        address = address or get_settings().ray_address
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": True,
            "configure_logging": False,
        }
        try:
            if address:
                ray.init(address=address, **options)
            else:
                # a cluster this process owns says at every start that it made itself a token
                logging.getLogger(_TOKEN_NOTE).setLevel(logging.ERROR)
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **options)
        except Exception as exc:
            where = address or "a local cluster"
            raise EngineError(f"cannot start or reach Ray at {where}: {exc}") from exc
        _fresh_paths()  # asked now, not as a first run starts its actors


def start_local_head(num_cpus: int | None = None) -> str:
    """Start (once) a local cluster owned by this process; returns its address for others."""
    import ray

    connect(None, num_cpus=num_cpus)
    return str(ray.get_runtime_context().gcs_address)


def stop_local_head() -> None:
    """Disconnect, and stop the local cluster if this process started it."""
    import ray

    with _lock:
        if ray.is_initialized():
            ray.shutdown()
