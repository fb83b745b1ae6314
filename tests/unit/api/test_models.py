"""`/v1/models`: each id once, whatever the engines are called."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.config import load_config
from appliance.root import build

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"


def test_an_external_engine_serving_default_lists_it_once() -> None:
    config = load_config(SHIPPED, env={"LLM_BASE_URL": "http://127.0.0.1:9/v1"})
    app = create_app(build(config))  # no lifespan: nothing is started
    ids = [m["id"] for m in TestClient(app).get("/v1/models").json()["data"]]
    assert ids.count("default") == 1
    assert len(ids) == len(set(ids))
    assert {"kai", "guardrail", "genetic", "wellness", "default"} <= set(ids)
