"""Ray connections: one per process, to RAY_ADDRESS or a local cluster started once."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from hypermetric.config import get_settings
from hypermetric.errors import EngineError

__all__ = ["cluster_cpus", "connect", "start_local_head", "stop_local_head"]

_lock = threading.Lock()
_started_here = False


def _code_paths() -> list[str]:
    """The driver's import paths, so workers import user modules the way the driver did."""
    seen: list[str] = []
    for entry in [os.getcwd(), *sys.path]:
        path = os.path.abspath(entry or os.getcwd())
        if os.path.isdir(path) and path not in seen and "site-packages" not in path:
            seen.append(path)
    return seen


def connect(address: str | None = None, *, num_cpus: int | None = None) -> None:
    """Connect this process to Ray: ``address``, else RAY_ADDRESS, else a new local cluster.

    Idempotent: a process that is connected already stays on its cluster (a process never
    starts a second local cluster).
    """
    global _started_here
    import ray
    from ray.job_config import JobConfig

    with _lock:
        if ray.is_initialized():
            return
        address = address or get_settings().ray_address
        options: dict[str, Any] = {
            "job_config": JobConfig(code_search_path=_code_paths()),
            "include_dashboard": False,
            "log_to_driver": True,
            "configure_logging": False,
        }
        try:
            if address:
                ray.init(address=address, **options)
            else:
                ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1, **options)
                _started_here = True
        except Exception as exc:
            where = address or "a local cluster"
            raise EngineError(f"cannot start or reach Ray at {where}: {exc}") from exc


def cluster_cpus() -> int:
    """CPUs of the connected cluster (at least 1)."""
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def start_local_head(num_cpus: int | None = None) -> str:
    """Start (once) a local cluster owned by this process; returns its address for others."""
    import ray

    connect(None, num_cpus=num_cpus)
    return str(ray.get_runtime_context().gcs_address)


def stop_local_head() -> None:
    """Disconnect, and stop the local cluster if this process started it."""
    global _started_here
    import ray

    with _lock:
        if ray.is_initialized():
            ray.shutdown()
        _started_here = False
