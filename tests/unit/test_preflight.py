"""The checks `serve` and `config validate` share."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import msgspec
import pytest

from appliance.config import load_config
from appliance.errors import ConfigError
from appliance.preflight import data_dir, preflight

SHIPPED = Path(__file__).resolve().parents[2] / "models.toml"


def with_data_dir(path: Path):  # type: ignore[no-untyped-def]
    config = load_config(SHIPPED, env={})
    return msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, data_dir=str(path))
    )


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "var").write_text("x")
    with pytest.raises(
        ConfigError, match=r"server.data_dir: expected a directory, got .* \(a file\)"
    ):
        preflight(with_data_dir(tmp_path / "var"))
    with pytest.raises(ConfigError, match=r"\(under a file\)"):
        data_dir(with_data_dir(tmp_path / "var" / "below"))


def test_validate_does_not_create_the_data_dir_and_serve_does(tmp_path: Path) -> None:
    config = with_data_dir(tmp_path / "a" / "b")
    preflight(config, host="127.0.0.1")
    assert not (tmp_path / "a").exists()
    preflight(config, host="127.0.0.1", create=True)
    assert (tmp_path / "a" / "b").is_dir()


def test_listening_beyond_loopback_without_a_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.host"):
        preflight(with_data_dir(tmp_path), host="0.0.0.0")


def test_an_existing_store_under_a_relative_data_dir_is_checked_on_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The quick start serves from the repository with `data_dir = "var"`: a second start finds
    the benchmark store the first one made, and checks it without a traceback."""
    monkeypatch.chdir(tmp_path)
    config = with_data_dir(Path("var"))
    preflight(config, create=True)
    from appliance.bench.service import db_path

    path = db_path(config)
    assert not path.is_absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 1")
    preflight(config, create=True)  # the second start
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(ConfigError, match=r"bench\.db_file"):
        preflight(config, create=True)
