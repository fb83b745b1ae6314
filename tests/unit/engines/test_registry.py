"""From config to endpoints and launch specs: dispatch on kind, placement hand-off, external URLs."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from appliance.config.load import load_config
from appliance.config.schema import EngineConfig
from appliance.engines import external
from appliance.engines.base import Endpoint, LaunchSpec
from appliance.engines.registry import build_engines, new_internal_api_key, placement_for
from appliance.errors import ConfigError

MODELS_TOML = Path(__file__).resolve().parents[3] / "models.toml"


class Recorder:
    """Stands in for a kind module (`sim`, `vllm`) and notes how it was called."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls: list[tuple[str, object]] = []

    def endpoint(self, engine: EngineConfig, api_key: str) -> Endpoint:
        self.calls.append(("endpoint", api_key))
        return Endpoint(
            engine.id, f"http://127.0.0.1:{engine.port}/v1", api_key, engine.names, True
        )

    def launch_spec(self, engine: EngineConfig, api_key: str, extra: object) -> LaunchSpec:
        self.calls.append(("launch_spec", extra))
        return LaunchSpec(
            engine_id=engine.id,
            argv=(self.kind, engine.model),
            env={},
            health_url=f"http://127.0.0.1:{engine.port}/health",
            startup_timeout_s=60.0,
        )


@pytest.fixture
def kinds(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    recorders = {kind: Recorder(kind) for kind in ("sim", "vllm")}
    for kind, recorder in recorders.items():
        module = types.ModuleType(f"appliance.engines.{kind}")
        module.endpoint = recorder.endpoint  # type: ignore[attr-defined]
        module.launch_spec = recorder.launch_spec  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, f"appliance.engines.{kind}", module)
    return recorders


@dataclass
class Plan:
    engines: dict[str, object]


def test_sim_engines_get_the_catalog_and_the_key(kinds):
    config = load_config(MODELS_TOML, profile="sim", env={})
    endpoints, specs = build_engines(config, "k")
    assert [e.engine_id for e in endpoints] == [e.id for e in config.engines]
    assert [s.engine_id for s in specs] == [e.id for e in config.engines]
    sim = kinds["sim"].calls
    assert ("endpoint", "k") in sim
    assert ("launch_spec", config.catalog) in sim
    assert kinds["vllm"].calls == []


def test_vllm_engines_get_their_placement_or_none(kinds):
    config = load_config(MODELS_TOML, profile="balanced", env={})
    placed = object()
    build_engines(config, "k", Plan(engines={"llama-70b": placed}))
    assert [extra for what, extra in kinds["vllm"].calls if what == "launch_spec"] == [placed, None]


def test_vllm_engines_without_a_plan_get_none(kinds):
    config = load_config(MODELS_TOML, profile="balanced", env={})
    _, specs = build_engines(config, "k", None)
    assert len(specs) == 2
    assert [extra for what, extra in kinds["vllm"].calls if what == "launch_spec"] == [None, None]


def test_external_engine_is_reached_not_launched():
    config = load_config(
        MODELS_TOML,
        env={"LLM_BASE_URL": "http://10.0.0.7:8000/v1/", "LLM_API_KEY": "theirs", "LLM_MODEL": "m"},
    )
    endpoints, specs = build_engines(config, "ours")
    assert specs == []
    assert endpoints == [
        Endpoint("external", "http://10.0.0.7:8000/v1", "theirs", ("m",), launched=False)
    ]


def test_external_endpoint_defaults():
    engine = EngineConfig(id="x", kind="external", model="m", base_url="http://h:11434")
    assert external.endpoint(engine, "ours") == Endpoint(
        "x", "http://h:11434/v1", "EMPTY", ("m",), launched=False
    )
    with pytest.raises(ConfigError, match=r"engines\.y\.base_url"):
        external.endpoint(EngineConfig(id="y", kind="external", model="m"), "ours")


def test_placement_lookup_is_tolerant():
    engine = EngineConfig(id="a", kind="vllm", model="m", port=1)
    entry = types.SimpleNamespace(engine_id="a")
    assert placement_for(None, engine) is None
    assert placement_for(object(), engine) is None
    assert placement_for(Plan(engines={}), engine) is None
    assert placement_for(types.SimpleNamespace(engines=[entry]), engine) is entry
    assert placement_for(types.SimpleNamespace(engines=(types.SimpleNamespace(),)), engine) is None


def test_unknown_kind_is_a_config_error():
    config = load_config(MODELS_TOML, env={"LLM_BASE_URL": "http://h/v1"})
    odd = msgspec.structs.replace(config.engines[0], kind="tgi")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one of 'vllm', 'sim', 'external'"):
        build_engines(msgspec.structs.replace(config, engines=(odd,)), "k")


def test_internal_keys_are_long_and_fresh():
    keys = {new_internal_api_key() for _ in range(10)}
    assert len(keys) == 10
    assert all(len(k) >= 40 for k in keys)
