"""The sim engine kind: where the gateway finds it and how the supervisor launches it."""

from __future__ import annotations

import sys

import pytest

from appliance.config import load_config
from appliance.config.schema import CatalogEntry, EngineConfig, SimSettings
from appliance.engines import sim
from appliance.errors import ConfigError
from appliance.simulator.cli import parse_args

CATALOG = {
    "llama-3.1-70b-instruct": CatalogEntry(
        params_b=70.6, size_class="70B", layers=80, hidden_size=8192, kv_heads=8, head_dim=128
    ),
}


def engine(**overrides) -> EngineConfig:
    settings = {"id": "llama-70b", "kind": "sim", "model": "llama-3.1-70b-instruct", "port": 8101}
    settings.update(overrides)
    return EngineConfig(**settings)


def test_the_endpoint_is_on_loopback_with_the_internal_key_and_every_name():
    point = sim.endpoint(engine(aliases=("kai",)), "secret")
    assert point.base_url == "http://127.0.0.1:8101/v1"
    assert point.root_url == "http://127.0.0.1:8101"
    assert point.api_key == "secret"
    assert point.names == ("llama-3.1-70b-instruct", "kai")
    assert point.launched and point.engine_id == "llama-70b"


def test_the_launch_spec_runs_the_simulator_with_the_engine_settings():
    settings = SimSettings(time_scale=0.0, seed=4, batch_slowdown=0.05, kv_cache_tokens=9000)
    spec = sim.launch_spec(
        engine(max_num_seqs=16, max_model_len=4096, sim=settings, aliases=("kai",)),
        "secret",
        CATALOG,
    )
    assert spec.argv[:3] == (sys.executable, "-m", "appliance.simulator")
    assert "secret" not in spec.argv
    assert spec.env["VLLM_API_KEY"] == "secret"
    assert spec.health_url == "http://127.0.0.1:8101/health"
    assert spec.startup_timeout_s == 30.0
    options, ignored, _ = parse_args(list(spec.argv[3:]))
    assert ignored == []
    assert options.served_model_names == ("llama-3.1-70b-instruct", "kai")
    assert (options.host, options.port) == ("127.0.0.1", 8101)
    assert (options.max_num_seqs, options.max_model_len, options.kv_budget) == (16, 4096, 9000)
    assert (options.size_class, options.time_scale, options.seed) == ("70B", 0.0, 4)
    assert options.batch_slowdown == 0.05
    assert options.error_rate == 0.0 and options.crash_after is None


def test_faults_and_rates_pass_through_and_a_slow_start_lengthens_the_timeout():
    settings = SimSettings(
        decode_tokens_per_s=25.0, error_rate=0.1, stall_rate=0.2, stall_s=3.0, crash_after=5,
        slow_start_s=12.0, malformed_rate=0.3, legacy_metric_names=True,
    )  # fmt: skip
    spec = sim.launch_spec(engine(sim=settings), "k", CATALOG)
    options, _, _ = parse_args(list(spec.argv[3:]))
    assert options.decode_tokens_per_s == 25.0
    assert (options.error_rate, options.stall_rate, options.stall_s) == (0.1, 0.2, 3.0)
    assert (options.crash_after, options.slow_start_s, options.malformed_rate) == (5, 12.0, 0.3)
    assert options.legacy_metric_names
    assert spec.startup_timeout_s == 42.0
    explicit = sim.launch_spec(engine(sim=settings, startup_timeout_s=5.0), "k", CATALOG)
    assert explicit.startup_timeout_s == 5.0


@pytest.mark.parametrize(
    ("model", "size"),
    [("llama-3.1-70b-instruct", "70B"), ("qwen-2.5-32b-instruct", "32B"), ("house-model", "8B")],
)
def test_the_size_class_comes_from_the_catalog_else_the_name_else_8b(model, size):
    assert sim.size_class(engine(model=model), CATALOG) == size


def test_a_sim_engine_without_a_port_is_a_config_error():
    with pytest.raises(ConfigError, match="port"):
        sim.endpoint(engine(port=None), "k")


def test_the_shipped_sim_profile_launches():
    config = load_config("models.toml", profile="sim", env={})
    for item in config.engines:
        spec = sim.launch_spec(item, "k", config.catalog)
        options, _, _ = parse_args(list(spec.argv[3:]))
        assert options.size_class == config.catalog[item.model].size_class
