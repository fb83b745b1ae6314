"""The shipped models.toml: its catalog and profiles are what the planner's figures are held to."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import read_raw
from appliance.config.schema import CatalogEntry, RawConfig

MODELS_TOML = Path(__file__).resolve().parents[3] / "models.toml"


@pytest.fixture(scope="session")
def raw() -> RawConfig:
    return read_raw(MODELS_TOML)


@pytest.fixture(scope="session")
def catalog(raw: RawConfig) -> dict[str, CatalogEntry]:
    return raw.catalog
