"""The one place settings are resolved.

Order of precedence, highest first: explicit overrides passed to :func:`load_settings`,
environment variables (``HYPERMETRIC_*``, ``RAY_ADDRESS``), a TOML config file
(``HYPERMETRIC_CONFIG``, else ``<home>/config.toml`` if present) using the same keys in
lower case without the prefix, then defaults.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hypermetric.errors import ConfigError
from hypermetric.masking import masked

__all__ = ["LAUNCHERS", "Settings", "get_settings", "load_settings", "reset_settings"]

ENV_PREFIX = "HYPERMETRIC_"


@dataclass(frozen=True, repr=False)
class Settings:
    """Resolved settings. Every layer asks :func:`get_settings` rather than the environment."""

    home: Path
    db_url: str
    storage: str
    ray_address: str | None = None
    #: examples per work unit handed to a driver worker (at most: see the coordinator)
    unit_size: int = 16000
    #: evaluator buffer thresholds: flush when any is reached
    flush_rows: int = 200_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_seconds: float = 30.0
    #: evaluator actors per run (0: one per CPU of the cluster)
    evaluators: int = 0
    #: driver actors per run (0: one per CPU of the cluster)
    workers: int = 0
    #: evaluation requests queued per evaluator before the coordinator stops handing out units
    max_pending_per_evaluator: int = 2
    #: bytes of examples a run may have read and not yet committed (then it stops reading,
    #: and asks its evaluators to write what they hold)
    inflight_bytes: int = 256 * 1024 * 1024
    #: seconds between run heartbeats
    heartbeat_seconds: float = 5.0
    #: how the scheduler starts runs: ``local`` processes, or ``ray-jobs`` (the Jobs API of
    #: the cluster at RAY_ADDRESS=http://HEAD:8265)
    launcher: str = "local"
    #: the folder shipped to the cluster with each Ray job (default: the scheduler's working
    #: directory), or ``none`` when the cluster's image has the evaluations installed
    job_working_dir: str | None = None
    #: comma-separated paths or patterns (as in .gitignore) left out of that folder
    job_excludes: str | None = None
    #: the local paths of HYPERMETRIC_STORAGE and a SQLite HYPERMETRIC_DB_URL are the same
    #: shared mount on every node of the cluster (else the ray-jobs launcher refuses them)
    shared_paths: bool = False
    #: bytes of JSON text an example field may take in the ``examples`` dataset: a larger
    #: value is stored as null (0: any size)
    example_field_bytes: int = 64 * 1024
    source: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __repr__(self) -> str:
        # settings travel to worker processes and into logs and tracebacks: no secret in clear
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return masked(f"Settings({shown})")

    @property
    def is_sqlite(self) -> bool:
        """True when the metadata DB is SQLite (the embedded default)."""
        return self.db_url.startswith("sqlite")


_INT_KEYS = {
    "unit_size",
    "flush_rows",
    "flush_bytes",
    "evaluators",
    "workers",
    "max_pending_per_evaluator",
    "inflight_bytes",
    "example_field_bytes",
}
_FLOAT_KEYS = {"flush_seconds", "heartbeat_seconds"}
_BOOL_KEYS = {"shared_paths"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
LAUNCHERS = ("local", "ray-jobs")
_KEYS = {f.name for f in fields(Settings)} - {"source"}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; fix HYPERMETRIC_CONFIG") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    section = data.get("hypermetric", data)
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError(
            f"config file {path} has unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}"
        )
    return dict(section)


def _coerce(key: str, value: Any, origin: str) -> Any:
    if key in _BOOL_KEYS:
        word = str(value).strip().lower()
        if word not in (*_TRUE, *_FALSE):
            raise ConfigError(f"{key}={value!r} from {origin} is not a yes/no value; give 1 or 0")
        return word in _TRUE
    if key == "launcher" and value not in LAUNCHERS:
        raise ConfigError(
            f"launcher={value!r} from {origin} is not a launcher; "
            f"give one of {', '.join(LAUNCHERS)}"
        )
    try:
        if key in _INT_KEYS:
            number = int(value)
            if number < 0:
                raise ValueError("negative")
            return number
        if key in _FLOAT_KEYS:
            seconds = float(value)
            if seconds <= 0:
                raise ValueError("not positive")
            return seconds
    except (TypeError, ValueError):
        raise ConfigError(
            f"{key}={value!r} from {origin} is not a valid number; give a non-negative number"
        ) from None
    return None if value in ("", None) else str(value)


def load_settings(environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Resolve settings from overrides, the environment, a config file and defaults."""
    env = dict(os.environ if environ is None else environ)
    home = Path(overrides.get("home") or env.get(ENV_PREFIX + "HOME") or ".hypermetric")
    home = home.expanduser().resolve()
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    config_path = env.get(ENV_PREFIX + "CONFIG")
    file_path = Path(config_path) if config_path else home / "config.toml"
    if config_path or file_path.exists():
        for key, value in _read_file(file_path).items():
            values[key] = _coerce(key, value, str(file_path))
            source[key] = str(file_path)
    for key in _KEYS - {"home"}:
        env_key = "RAY_ADDRESS" if key == "ray_address" else ENV_PREFIX + key.upper()
        if env.get(env_key):
            values[key] = _coerce(key, env[env_key], env_key)
            source[key] = env_key
    for key, value in overrides.items():
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r}; known: {sorted(_KEYS)}")
        if key != "home" and value is not None:
            values[key] = _coerce(key, value, "arguments")
            source[key] = "arguments"
    values.setdefault("db_url", f"sqlite:///{home / 'hypermetric.db'}")
    values.setdefault("storage", str(home / "data"))
    return Settings(home=home, source=source, **values)


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, resolved once on first use."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def reset_settings(settings: Settings | None = None, **overrides: Any) -> Settings:
    """Replace the process-wide settings (tests, CLI options); returns the new value."""
    global _current
    if settings is not None and overrides:
        settings = replace(settings, **overrides)
    _current = settings if settings is not None else load_settings(**overrides)
    return _current
