"""Config loading: the shipped file, environment overrides, and clear errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import AGENTS, load_config, read_raw
from appliance.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "models.toml"


def test_shipped_default_is_the_simulator() -> None:
    config = load_config(SHIPPED, env={})
    assert config.profile == "sim"
    assert {e.kind for e in config.engines} == {"sim"}
    assert set(config.agents) == set(AGENTS)
    for agent in config.agents.values():
        assert config.engine_for(agent.model) is not None
        for fallback in agent.fallbacks:
            assert config.engine_for(fallback) is not None


def test_expected_table_matches_the_service_guide() -> None:
    config = load_config(SHIPPED, env={})
    table = {
        a: (c.expected.model_size, c.expected.p95_s, c.expected.tokens_per_s)
        for a, c in config.agents.items()
    }
    assert table == {
        "kai": ("70B", (5.0, 8.0), (15.0, 20.0)),
        "guardrail": ("8B", (1.0, 2.0), (40.0, 60.0)),
        "genetic": ("32B", (3.0, 5.0), (25.0, 35.0)),
        "wellness": ("70B", (5.0, 8.0), (15.0, 20.0)),
    }


@pytest.mark.parametrize("profile", ["budget", "balanced", "performance"])
def test_gpu_profiles_load(profile: str) -> None:
    config = load_config(SHIPPED, profile=profile, env={})
    assert config.gpus == "2xA100-40GB"
    assert all(e.kind == "vllm" for e in config.engines)


def test_guide_originals_are_examples_only() -> None:
    raw = read_raw(SHIPPED)
    for name in ("guide-budget", "guide-balanced", "guide-performance"):
        assert raw.profiles[name].example_only
        with pytest.raises(ConfigError, match="example only"):
            load_config(SHIPPED, profile=name, env={})


def test_llm_base_url_alone_gives_an_external_engine() -> None:
    config = load_config(SHIPPED, env={"LLM_BASE_URL": "http://10.0.0.5:8000/v1/"})
    (engine,) = config.engines
    assert config.profile == "external"
    assert engine.kind == "external"
    assert engine.base_url == "http://10.0.0.5:8000/v1"
    assert engine.name == "default"
    assert all(agent.model == "default" for agent in config.agents.values())


def test_agent_model_variables_with_an_external_engine() -> None:
    env = {
        "LLM_BASE_URL": "http://127.0.0.1:9000/v1",
        "LLM_API_KEY": "secret",
        "LLM_MODEL": "big",
        "GUARDRAIL_AGENT_MODEL": "small",
    }
    config = load_config(SHIPPED, env=env)
    (engine,) = config.engines
    assert engine.api_key == "secret"
    assert engine.names == ("big", "small")
    assert config.agents["guardrail"].model == "small"
    assert config.agents["guardrail"].fallbacks == ("big",)
    assert config.agents["kai"].model == "big"


def test_connection_variables_override_the_file() -> None:
    env = {
        "LLM_TIMEOUT": "12.5",
        "LLM_MAX_RETRIES": "1",
        "LLM_RETRY_DELAY": "0.5",
        "LLM_CIRCUIT_BREAKER_THRESHOLD": "7",
        "LLM_CIRCUIT_BREAKER_TIMEOUT": "9",
    }
    llm = load_config(SHIPPED, env=env).llm
    assert (llm.timeout, llm.max_retries, llm.retry_delay) == (12.5, 1, 0.5)
    assert (llm.circuit_breaker_threshold, llm.circuit_breaker_timeout) == (7, 9.0)


def test_agent_model_variable_picks_another_served_model() -> None:
    config = load_config(SHIPPED, env={"KAI_AGENT_MODEL": "llama-3.1-8b-instruct"})
    assert config.agents["kai"].model == "llama-3.1-8b-instruct"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"LLM_TIMEOUT": "soon"},
            "environment variable LLM_TIMEOUT: expected a finite number, got 'soon'",
        ),
        ({"LLM_MAX_RETRIES": "2.5"}, "environment variable LLM_MAX_RETRIES: expected an integer"),
        ({"LLM_TIMEOUT": "-3"}, "environment variable LLM_TIMEOUT: expected float > 0"),
        (
            {"KAI_AGENT_MODEL": "gpt-9"},
            "environment variable KAI_AGENT_MODEL: expected a model served",
        ),
        (
            {"LLM_BASE_URL": "ftp://x"},
            "environment variable LLM_BASE_URL: expected an http:// or https:// URL",
        ),
        ({"LLM_MODEL": "nope"}, "environment variable LLM_MODEL: expected a model served"),
    ],
)
def test_bad_variables_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(SHIPPED, env=env)
    assert str(info.value).startswith(message)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def _replace(old: str, new: str) -> str:
    text = SHIPPED.read_text()
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("profile = [", "-", "valid TOML"),
        (_replace("port = 8000", 'port = "eight"'), "server.port", "expected int, got str"),
        (_replace("port = 8000", "port = 70000"), "server.port", "expected int <= 65535"),
        (_replace("timeout = 30.0", "timeout = 30.0\ntimout = 3"), "llm", "unknown field timout"),
        (
            _replace('kind = "sim"', 'kind = "gpu"'),
            "profiles.sim.engines[0].kind",
            "expected one of 'external', 'sim', 'vllm', got 'gpu'",
        ),
        (_replace('profile = "sim"', 'profile = "nope"'), "profile", "expected one of"),
        (
            _replace("port = 8102", "port = 8101"),
            "profiles.sim.engines[1].port",
            "expected a port no other engine uses",
        ),
        (
            _replace(
                'agents.kai = { model = "llama-3.1-70b-instruct", fallbacks = ["llama-3.1-8b-instruct"] }',
                'agents.kai = { model = "llama-3.1-70b-instruct", fallbacks = ["mistral"] }',
            ),
            "profiles.sim.agents.kai",
            "expected a model served by an engine",
        ),
        (
            _replace("[agents.wellness]", "[agents.therapist]"),
            "agents.wellness",
            "expected a section for each of the four agents",
        ),
    ],
)
def test_bad_files_name_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml", env={})


_SECOND_8B = """
[[profiles.sim.engines]]
id = "llama-8b-b"
kind = "sim"
model = "{model}"
served_name = "llama-3.1-8b-instruct"
port = 8104
"""


def test_engines_serving_the_same_model_are_replicas(tmp_path: Path) -> None:
    text = SHIPPED.read_text() + _SECOND_8B.format(model="llama-3.1-8b-instruct")
    config = load_config(_write(tmp_path, text), env={})
    replicas = config.engines_for("llama-3.1-8b-instruct")
    assert [e.id for e in replicas] == ["llama-8b", "llama-8b-b"]
    assert config.engine_for("llama-3.1-8b-instruct") is replicas[0]


def test_a_served_name_shared_by_different_models_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, SHIPPED.read_text() + _SECOND_8B.format(model="qwen-2.5-32b-instruct"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert message.startswith(f"{path}: profiles.sim.engines[3].served_name: "), message
    assert "a replica of engine 'llama-8b'" in message


def test_the_shipped_replica_profile_has_two_guardrail_replicas() -> None:
    raw = read_raw(SHIPPED)
    profile = raw.profiles["performance-replicas"]
    guardrail = profile.agents["guardrail"].model
    replicas = [e for e in profile.engines if e.name == guardrail]
    assert len(replicas) == 2
    assert len({e.port for e in replicas}) == 2
