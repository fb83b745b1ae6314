"""Every route in the app's own route table needs a key, except an explicit allow-list of probes.

The table is walked, not listed by hand: a route added later is covered without touching this
test, and leaving one open means adding it to `OPEN_PATHS` on purpose.
"""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.api.auth import OPEN_PATHS, OPEN_PREFIXES, is_open
from appliance.config import load_config
from appliance.root import build

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"
KEY = "coverage-key"
# The only paths meant to answer without a key: load balancers and systemd probes have none, and
# the operations page's shell must load before it can ask for a key (its data needs one).
EXPECTED_OPEN = {"/health", "/health/live", "/health/ready", "/ui", "/ui/session"}
EXPECTED_OPEN_PREFIXES = ("/ui/static/",)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    loaded = load_config(SHIPPED, env={})
    config = msgspec.structs.replace(
        loaded,
        security=msgspec.structs.replace(loaded.security, api_keys=(KEY,)),
        server=msgspec.structs.replace(loaded.server, data_dir=str(tmp_path_factory.mktemp("var"))),
    )
    assert config.bench.enabled  # its routes are in the table too
    return create_app(build(config))


def concrete(path: str) -> str:
    """A route path with its parameters filled: `/benchmarks/{run_id:int}` -> `/benchmarks/1`."""
    return re.sub(r"\{(\w+)(?::(\w+))?\}", lambda m: "1" if m[2] == "int" else "x", path)


def table(app: Litestar) -> list[tuple[str, str]]:
    found = []
    for route in app.routes:
        methods = sorted(getattr(route, "methods", None) or {"GET", "POST"})
        for method in methods:
            if method not in ("HEAD", "OPTIONS"):
                found.append((method, route.path))
    return found


def test_the_allow_list_is_only_probes_and_the_page_shell() -> None:
    assert set(OPEN_PATHS) == EXPECTED_OPEN
    assert OPEN_PREFIXES == EXPECTED_OPEN_PREFIXES


def test_the_table_has_the_routes_that_matter(app: Litestar) -> None:
    paths = {path for _, path in table(app)}
    for expected in (
        "/v1/chat/completions",
        "/v1/converse",
        "/v1/models",
        "/health/detailed",
        "/metrics",
        "/schema/openapi.json",
        "/admin/overview",
        "/admin/history",
    ):
        assert expected in paths
    assert any(path.startswith("/benchmarks") for path in paths)
    assert any(path.startswith("/admin") for path in paths)


def test_every_route_but_the_probes_refuses_a_missing_or_wrong_key(app: Litestar) -> None:
    client = TestClient(app, raise_server_exceptions=False)  # no lifespan: nothing starts
    checked = 0
    for method, path in table(app):
        if is_open(concrete(path)):
            continue
        url = concrete(path)
        for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
            response = client.request(method, url, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.json()["error"]["type"] == "authentication_error"
            assert response.headers["www-authenticate"].startswith("Bearer")
        checked += 1
    assert checked >= 15


def test_a_path_without_a_route_asks_for_a_key_before_saying_not_found(app: Litestar) -> None:
    """The keys are checked before routing: without one, nobody learns which paths exist."""
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/no/such/route").status_code == 401
    keyed = client.get("/no/such/route", headers={"authorization": f"Bearer {KEY}"})
    assert keyed.status_code == 404
    assert keyed.json()["error"]["type"] == "invalid_request_error"
