"""Ray connections: one per process, to RAY_ADDRESS or a local cluster started once."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

from hypermetric.config import get_settings
from hypermetric.errors import EngineError

__all__ = ["connect", "start_local_head", "stop_local_head"]

_lock = threading.Lock()
_TOKEN_NOTE = "ray._private.authentication.authentication_token_setup"


def _extra_paths() -> list[str]:
    """Import paths this process has that a fresh worker would not (pytest's root, a
    ``FILE.py:NAME`` target's folder...), so workers import user modules as the driver did.

    A fresh interpreter of the same executable and environment already has the rest, and
    Ray adds the working directory and the script's. The paths travel as PYTHONPATH in the
    job's runtime environment only when there are any: such a job cannot use the workers
    Ray starts in advance. (Ray's code_search_path is no alternative: it makes workers load
    functions by module name and re-run a driver script's body.)
    """
    probe = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sys.path))"],
        capture_output=True,
        text=True,
        check=False,
    )
    fresh = set(json.loads(probe.stdout)) if probe.returncode == 0 else set()
    script_dir = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    known = {os.path.abspath(p or os.getcwd()) for p in fresh} | {os.getcwd(), script_dir}
    extra: list[str] = []
    for entry in sys.path:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.isdir(path) and path not in known and path not in extra:
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
        extra = _extra_paths()
        if extra:
            inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
            pythonpath = os.pathsep.join(extra + inherited)
            options["runtime_env"] = {"env_vars": {"PYTHONPATH": pythonpath}}
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
