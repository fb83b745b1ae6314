"""Each agent's prompt plus its answer must fit the context of the engines that serve it."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from appliance.agents.budget import MESSAGE_ROOM_TOKENS, check_prompts_fit, prompt_tokens
from appliance.agents.prompts import system_prompt
from appliance.agents.schemas import GeneticTraits, GuardrailVerdict, WellnessInsights
from appliance.config import load_config
from appliance.config.schema import AGENTS
from appliance.errors import ConfigError

MODELS_TOML = Path(__file__).resolve().parents[3] / "models.toml"


def test_the_estimate_is_conservative_and_includes_the_template():
    for agent in AGENTS:
        assert prompt_tokens(agent) >= len(system_prompt(agent)) / 3


@pytest.mark.parametrize("profile", ["sim", "budget", "balanced", "performance", "cpu"])
def test_every_shipped_profile_fits(profile):
    check_prompts_fit(load_config(MODELS_TOML, profile=profile, env={}))


def test_an_engine_too_short_for_the_guardrail_is_refused_in_one_line(tmp_path):
    text = MODELS_TOML.read_text().replace(
        "max_model_len = 2048\nmax_num_seqs = 4", "max_model_len = 1200\nmax_num_seqs = 4"
    )
    short = tmp_path / "models.toml"
    short.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(short, profile="cpu", env={})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{short}: profiles.cpu.engines[0].max_model_len: expected at least")
    needed = prompt_tokens("guardrail") + MESSAGE_ROOM_TOKENS + 96
    assert f"at least {needed} tokens for the guardrail agent" in message
    assert message.endswith("got 1200")


def test_a_fallback_engine_counts_too():
    config = load_config(MODELS_TOML, profile="sim", env={})
    small = config.engine_for("llama-3.1-8b-instruct")
    assert small is not None
    engines = tuple(
        msgspec.structs.replace(e, max_model_len=512) if e is small else e for e in config.engines
    )
    with pytest.raises(ConfigError, match=r"engines\[1\]\.max_model_len"):
        check_prompts_fit(msgspec.structs.replace(config, engines=engines))


def test_model_outputs_are_bounded_everywhere():
    """No unbounded number or string in what a model must answer."""

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if node.get("type") == "integer" or node.get("type") == "number":
                assert "minimum" in node and "maximum" in node, node
            if node.get("type") == "number":  # or a decoder may write digits without end
                assert node.get("multipleOf") == 0.01, node
            if node.get("type") == "string" and "enum" not in node:
                assert "maxLength" in node, node
            if node.get("type") == "array":
                assert "maxItems" in node, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for kind in (GeneticTraits, WellnessInsights, GuardrailVerdict):
        walk(msgspec.json.schema(kind))
