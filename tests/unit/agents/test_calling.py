"""How an agent reads its completions and an engine's refusal: the appliance's own structs and
errors, no SDK types."""

from __future__ import annotations

from appliance.agents.calling import UNAVAILABLE, AgentCaller, reason
from appliance.errors import EngineRefused
from tests.unit.agents.fakes import FakeGateway, config
from tests.unit.agents.test_orchestrator import build, turn


async def test_the_reply_text_is_the_first_choices_content() -> None:
    cfg = config()
    gateway = FakeGateway(cfg)
    gateway.answer("kai", "Take a slow breath with me.")
    caller = AgentCaller("kai", cfg.agents["kai"], gateway)
    text, completion = await caller.text(caller.messages({"role": "user", "content": "hi"}))
    assert text == "Take a slow breath with me."
    assert completion.result.text == text and completion.model == cfg.agents["kai"].model


def test_an_engines_refusal_means_no_model_can_answer_now() -> None:
    refused = EngineRefused(400, "This model's maximum context length is 2048 tokens.")
    assert isinstance(refused, UNAVAILABLE)
    assert reason(refused) == "engine answered 400"


async def test_a_refusal_from_every_model_gets_the_generic_reply_and_says_why() -> None:
    orch, gw = build()
    for agent in ("kai", "guardrail"):
        gw.always(agent, EngineRefused(400, "too long"))
    answer = await orch.converse(turn("Is tea better than coffee at night?"))
    assert answer.fallback_step == "generic" and answer.model is None
    assert answer.notice is not None and "(engine answered 400)" in answer.notice
