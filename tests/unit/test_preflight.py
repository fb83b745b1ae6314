"""The checks `serve` and `config validate` share."""

from __future__ import annotations

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
