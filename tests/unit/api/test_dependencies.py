"""The parts handlers receive by dependency injection never share a name with a body field.

Litestar reads a validation error on a field named like a dependency as a failure of the
dependency, a 500; a bad body must stay a 400 (`{"agents": null}` on `POST /benchmarks` once
gave a 500 while a dependency was called `agents`)."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from appliance.api.app import create_app
from appliance.config import load_config
from appliance.root import build

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Litestar:
    loaded = load_config(SHIPPED, env={})
    config = msgspec.structs.replace(
        loaded,
        server=msgspec.structs.replace(loaded.server, data_dir=str(tmp_path_factory.mktemp("v"))),
    )
    return create_app(build(config))


def body_fields(app: Litestar) -> set[str]:
    fields: set[str] = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None:
                continue
            for field in (data, *data.inner_types):
                kind = field.annotation
                if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                    fields.update(kind.__struct_fields__)
    return fields


def test_no_dependency_is_named_like_a_body_field(app: Litestar) -> None:
    fields = body_fields(app)
    assert {"agents", "message", "history", "kind"} <= fields  # the bodies were found
    assert not set(app.dependencies) & fields


def test_a_null_where_a_list_belongs_is_a_400(app: Litestar) -> None:
    response = TestClient(app).post("/benchmarks", json={"agents": None})  # no lifespan
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "agents"
