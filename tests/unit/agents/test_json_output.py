"""Reliable JSON: schema out, validation in, one repair, then a clear error."""

from __future__ import annotations

import logging

import msgspec
import pytest

from appliance.agents.calling import AgentCaller
from appliance.agents.json_output import complete_json, decode, describe, json_schema
from appliance.agents.schemas import GeneticTraits, GuardrailVerdict, WellnessInsights
from appliance.errors import InvalidModelOutput
from appliance.simulator.schema_instance import instance
from tests.unit.agents.fakes import ALLOW, FakeGateway, as_json, config


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway(config())


@pytest.fixture
def caller(gateway: FakeGateway) -> AgentCaller:
    return AgentCaller("guardrail", gateway.config.agents["guardrail"], gateway)


def test_schemas_have_an_object_root_and_benign_first_choices() -> None:
    for kind in (GuardrailVerdict, GeneticTraits, WellnessInsights):
        schema = json_schema(kind)
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        # What a schema-driven engine picks without a model validates, and is the harmless value.
        decode(msgspec.json.encode(instance(schema)).decode(), kind)
    verdict = msgspec.convert(instance(json_schema(GuardrailVerdict)), GuardrailVerdict)
    assert (verdict.verdict, verdict.risk_level) == ("allow", "none")
    insights = msgspec.convert(instance(json_schema(WellnessInsights)), WellnessInsights)
    assert (insights.urgency, insights.suggested_action.kind) == ("none", "none")


async def test_a_valid_answer_is_asked_for_with_its_schema(
    gateway: FakeGateway, caller: AgentCaller
) -> None:
    parsed = await complete_json(caller, caller.messages(), GuardrailVerdict)
    assert parsed.value == ALLOW and not parsed.repaired
    (call,) = gateway.calls
    fmt = call.payload["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["schema"] == json_schema(GuardrailVerdict)
    assert call.payload["max_tokens"] == gateway.config.agents["guardrail"].max_tokens


async def test_an_invalid_answer_is_repaired_once(
    gateway: FakeGateway, caller: AgentCaller, caplog: pytest.LogCaptureFixture
) -> None:
    gateway.answer("guardrail", '{"verdict": "maybe", "risk_level": "none"}', as_json(ALLOW))
    with caplog.at_level(logging.DEBUG):
        parsed = await complete_json(caller, caller.messages(), GuardrailVerdict)
    assert parsed.value == ALLOW and parsed.repaired
    repair = gateway.calls[1].payload["messages"]
    assert repair[-2] == {
        "role": "assistant",
        "content": '{"verdict": "maybe", "risk_level": "none"}',
    }
    assert "not valid" in repair[-1]["content"] and "$.verdict" in repair[-1]["content"]
    assert "maybe" not in caplog.text  # the model's words are not logged either


async def test_invalid_twice_is_a_clear_error(gateway: FakeGateway, caller: AgentCaller) -> None:
    gateway.answer("guardrail", "Sure! Here is the JSON:", '{"verdict": "allow"}')
    with pytest.raises(InvalidModelOutput) as info:
        await complete_json(caller, caller.messages(), GuardrailVerdict)
    assert "GuardrailVerdict" in info.value.message
    assert "repair" in info.value.message
    assert info.value.status_code == 502
    assert len(gateway.calls) == 2


async def test_no_content_counts_as_invalid(gateway: FakeGateway, caller: AgentCaller) -> None:
    async def nothing(_: object) -> str:
        return None  # type: ignore[return-value]

    gateway.answer("guardrail", nothing, as_json(ALLOW))
    parsed = await complete_json(caller, caller.messages(), GuardrailVerdict)
    assert parsed.repaired


def test_decode_accepts_a_fenced_object_and_enforces_cross_field_rules() -> None:
    assert decode(f"```json\n{as_json(ALLOW)}\n```", GuardrailVerdict) == ALLOW
    twice = (
        '{"traits": ['
        + ",".join(
            ['{"name": "optimism", "score": 0.5, "evidence_count": 1, "confidence": 0.5}'] * 2
        )
        + "]}"
    )
    with pytest.raises(msgspec.ValidationError, match="once"):
        decode(twice, GeneticTraits)
    with pytest.raises(msgspec.ValidationError):
        decode(
            '{"traits": [{"name": "optimism", "score": 2, "evidence_count": 1, '
            '"confidence": 0.5}]}',
            GeneticTraits,
        )


def test_describe_drops_quoted_values() -> None:
    try:
        msgspec.json.decode(
            b'{"verdict": "my secret", "risk_level": "none"}', type=GuardrailVerdict
        )
    except msgspec.ValidationError as exc:
        text = describe(exc)
    assert "secret" not in text and "$.verdict" in text


def test_genetic_traits_are_asked_for_keyed_by_name_so_none_can_repeat() -> None:
    schema = json_schema(GeneticTraits)
    traits = schema["properties"]["traits"]
    assert traits["type"] == "object" and traits["additionalProperties"] is False
    assert set(traits["properties"]) >= {"openness", "optimism", "resilience"}
    one = traits["properties"]["optimism"]
    assert "name" not in one["properties"] and "name" not in one["required"]
    assert set(one["required"]) == {"score", "evidence_count", "confidence"}

    answer = (
        '{"traits": {"optimism": {"score": 0.5, "evidence_count": 2, "confidence": 0.25}, '
        '"resilience": {"score": 0.75, "evidence_count": 1, "confidence": 0.5}}, '
        '"overall_confidence": 0.4, "summary": "s"}'
    )
    decoded = decode(answer, GeneticTraits)
    assert [t.name for t in decoded.traits] == ["optimism", "resilience"]
    assert decoded.traits[0].evidence_count == 2
    with pytest.raises(msgspec.ValidationError):
        decode(
            '{"traits": {"optimism": {"score": 5, "evidence_count": 1, "confidence": 0}}}',
            GeneticTraits,
        )
    with pytest.raises(msgspec.ValidationError):
        decode(
            '{"traits": {"sleepiness": {"score": 0.5, "evidence_count": 1, "confidence": 0}}}',
            GeneticTraits,
        )
