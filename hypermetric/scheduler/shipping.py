"""What a run needs to travel to a Ray cluster as a job, checked before anything is submitted.

* **Reachable state.** A job may run on any node: the metadata DB and the shard storage must
  be reachable from there. A SQLite DB or a local storage path is refused (one line saying
  what to use), unless ``HYPERMETRIC_SHARED_PATHS`` says the path is a mount every node
  shares.
* **The user's code.** The folder ``HYPERMETRIC_JOB_WORKING_DIR`` names (the scheduler's
  working directory by default) travels as the job's ``working_dir``, less
  ``HYPERMETRIC_JOB_EXCLUDES``, the Hypermetric home and what ``.gitignore``/``.rayignore``
  leave out. It is packed the way Ray packs it (Ray's own packaging function, so the size is
  exactly the upload's) and refused when over the 100 MiB the Jobs API accepts. ``none``
  ships nothing: the cluster's image has the evaluations installed.
* **The cluster's token.** Ray 2.60 turns token authentication on by default: the token
  comes from ``RAY_AUTH_TOKEN``, the file ``RAY_AUTH_TOKEN_PATH`` names, or Ray's default
  file ``~/.ray/auth_token``, the places Ray itself reads, in that order.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from hypermetric.config import ENV_PREFIX, Settings
from hypermetric.errors import ConfigError, SchedulerError
from hypermetric.masking import masked

__all__ = [
    "PACKAGE_LIMIT",
    "ClusterToken",
    "check_reachable",
    "cluster_token",
    "job_env_vars",
    "package_size",
    "working_dir_env",
]

#: the largest package the Jobs API accepts in one upload (larger ones get HTTP 413)
PACKAGE_LIMIT = 100 * 1024 * 1024
#: settings that only the scheduler uses: they do not travel to the job
_SCHEDULER_ONLY = {"home", "ray_address", "launcher", "job_working_dir", "job_excludes"}
_SHARED = f"{ENV_PREFIX}SHARED_PATHS=1"
#: Ray's packaging says that it packs a folder (every launch) and which files are big:
#: the size check says what matters, in its own words
_PACKING = logging.getLogger("hypermetric.scheduler.packing")
_PACKING.setLevel(logging.ERROR)


def _is_local(storage: str) -> bool:
    scheme, sep, _ = storage.partition("://")
    return not sep or scheme.lower() == "file"


def check_reachable(settings: Settings) -> None:
    """SchedulerError unless the DB and the storage can be reached from any node."""
    if settings.shared_paths:
        return
    if settings.is_sqlite:
        raise SchedulerError(
            f"the metadata DB is SQLite ({masked(settings.db_url)}), which the Ray cluster's "
            "nodes cannot reach: set HYPERMETRIC_DB_URL=postgresql+psycopg://..., or "
            f"{_SHARED} if that file is on a mount every node shares"
        )
    if _is_local(settings.storage):
        raise SchedulerError(
            f"HYPERMETRIC_STORAGE is a local path ({settings.storage}), which the Ray "
            "cluster's nodes cannot reach: use s3://bucket/prefix (or another object store), "
            f"or {_SHARED} if that path is a mount every node shares"
        )


@dataclass(frozen=True)
class ClusterToken:
    """The cluster's authentication token and where it was found (never the token itself in
    ``repr``)."""

    value: str
    source: str

    def __repr__(self) -> str:
        return f"ClusterToken(from {self.source})"


def cluster_token(environ: dict[str, str] | None = None) -> ClusterToken | None:
    """The token Ray would use in this environment, or None if there is none."""
    env = os.environ if environ is None else environ
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return ClusterToken(env["RAY_AUTH_TOKEN"].strip(), "RAY_AUTH_TOKEN")
    named = env.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named).expanduser() if named else Path.home() / ".ray" / "auth_token"
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        if named:
            raise ConfigError(
                f"RAY_AUTH_TOKEN_PATH={named} does not exist; give the file holding the "
                "cluster's token (`ray get-auth-token` on the head prints it)"
            ) from None
        return None
    except OSError as exc:
        raise ConfigError(f"cannot read the Ray token file {path}: {exc.strerror}") from None
    if not value:
        return None
    return ClusterToken(value, f"RAY_AUTH_TOKEN_PATH={named}" if named else str(path))


def job_env_vars(settings: Settings, token: ClusterToken | None) -> dict[str, str]:
    """The environment a job's run process gets: this scheduler's resolved settings (from
    its environment or config file) and the cluster's token."""
    env: dict[str, str] = {
        f"{ENV_PREFIX}DB_URL": settings.db_url,
        f"{ENV_PREFIX}STORAGE": settings.storage,
    }
    if settings.shared_paths:
        env[f"{ENV_PREFIX}HOME"] = str(settings.home)
    for f in fields(settings):
        if f.name in settings.source and f.name not in _SCHEDULER_ONLY:
            value = getattr(settings, f.name)
            env[ENV_PREFIX + f.name.upper()] = str(int(value) if isinstance(value, bool) else value)
    if token is not None:
        # the job's driver joins the cluster with it (a head started from a token file may
        # not hand it on); whoever can read the job's runtime_env holds the token already
        env.update(RAY_AUTH_TOKEN=token.value, RAY_AUTH_MODE="token")
    return env


def _excludes(settings: Settings, folder: Path) -> list[str]:
    out = [p.strip() for p in (settings.job_excludes or "").split(",") if p.strip()]
    home = settings.home.resolve()
    if home.is_relative_to(folder) and home != folder:
        out.append(str(home.relative_to(folder)))  # the local DB and shards never travel
    return out


def package_size(folder: Path, excludes: list[str]) -> int:
    """Bytes of the package Ray would upload for ``folder`` (packed by Ray, then dropped)."""
    from ray._private.runtime_env.packaging import create_package

    include_gitignore = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
    with tempfile.TemporaryDirectory(prefix="hm-package-") as tmp:
        target = Path(tmp) / "package.zip"
        create_package(
            str(folder),
            target,
            include_gitignore=include_gitignore,
            excludes=excludes,
            logger=_PACKING,
        )
        return target.stat().st_size


def working_dir_env(settings: Settings) -> dict[str, Any]:
    """The ``runtime_env`` part that ships the user's code; SchedulerError if it is too big."""
    named = settings.job_working_dir
    if named is not None and named.strip().lower() == "none":
        return {}
    folder = Path(named or os.getcwd()).expanduser().resolve()
    if not folder.is_dir():
        raise SchedulerError(
            f"HYPERMETRIC_JOB_WORKING_DIR={named} is not a folder; give the folder of your "
            "evaluations' code, or none if the cluster's image has it installed"
        )
    excludes = _excludes(settings, folder)
    size = package_size(folder, excludes)
    if size > PACKAGE_LIMIT:
        raise SchedulerError(
            f"the job's working directory {folder} packs to {size / 2**20:.0f} MiB, over the "
            f"{PACKAGE_LIMIT // 2**20} MiB a Ray job may upload: leave paths out with "
            f"{ENV_PREFIX}JOB_EXCLUDES=data,*.ckpt (or .rayignore), point "
            f"{ENV_PREFIX}JOB_WORKING_DIR at the code's folder, or install the code in the "
            f"cluster's image and set {ENV_PREFIX}JOB_WORKING_DIR=none"
        )
    env: dict[str, Any] = {"working_dir": str(folder)}
    if excludes:
        env["excludes"] = excludes
    return env
