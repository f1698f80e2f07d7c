"""Settings resolve from arguments, environment, a config file and defaults, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from hypermetric.config import load_settings
from hypermetric.errors import ConfigError


def test_defaults_live_in_the_home(tmp_path: Path) -> None:
    s = load_settings(environ={"HYPERMETRIC_HOME": str(tmp_path)})
    assert s.home == tmp_path
    assert s.db_url == f"sqlite:///{tmp_path / 'hypermetric.db'}"
    assert s.storage == str(tmp_path / "data")
    assert s.ray_address is None and s.is_sqlite


def test_environment_beats_file_and_arguments_beat_environment(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('storage = "/from/file"\nflush_rows = 7\nunit_size = 3\n')
    env = {
        "HYPERMETRIC_HOME": str(tmp_path),
        "HYPERMETRIC_STORAGE": "s3://bucket/x",
        "RAY_ADDRESS": "ray://head:10001",
        "HYPERMETRIC_FLUSH_ROWS": "9",
    }
    s = load_settings(environ=env, unit_size=5)
    assert s.storage == "s3://bucket/x"
    assert s.ray_address == "ray://head:10001"
    assert s.flush_rows == 9 and s.unit_size == 5
    assert s.source["flush_rows"] == "HYPERMETRIC_FLUSH_ROWS"


def test_bad_values_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="HYPERMETRIC_FLUSH_ROWS"):
        load_settings(environ={"HYPERMETRIC_HOME": str(tmp_path), "HYPERMETRIC_FLUSH_ROWS": "x"})
    (tmp_path / "config.toml").write_text("nonsense = 1\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_settings(environ={"HYPERMETRIC_HOME": str(tmp_path)})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(environ={"HYPERMETRIC_CONFIG": str(tmp_path / "nope.toml")})
