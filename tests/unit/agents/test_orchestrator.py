"""The orchestrator on a fake gateway: a turn's safety decisions, fallbacks and priorities."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from appliance.agents.orchestrator import Orchestrator
from appliance.agents.schemas import (
    AnalysisRequest,
    CheckIn,
    ConverseRequest,
    GuardrailCheckRequest,
    GuardrailVerdict,
    Turn,
)
from appliance.errors import BadRequest, EngineUnavailable, InvalidModelOutput, Overloaded
from appliance.load.priority import Priority
from tests.unit.agents.fakes import FakeGateway, as_json, config

DOWN = EngineUnavailable("No engine could serve it.")
BLOCK = GuardrailVerdict(verdict="block", risk_level="medium", categories=["illegal_activity"])
CRISIS = GuardrailVerdict(verdict="crisis", risk_level="critical", categories=["self_harm"])
KAI = "I hear you. That sounds like a lot to hold."


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def build(**safety: Any) -> tuple[Orchestrator, FakeGateway]:
    cfg = config(**safety)
    gateway = FakeGateway(cfg)
    return Orchestrator(cfg, gateway, clock=Clock()), gateway


def turn(message: str, *history: tuple[str, str], locale: str | None = None) -> ConverseRequest:
    return ConverseRequest(
        message=message,
        history=[Turn(role=r, content=c) for r, c in history],  # type: ignore[arg-type]
        locale=locale,
    )


# The usual path ------------------------------------------------------------------------------


async def test_a_turn_releases_kais_reply_after_both_checks() -> None:
    orch, gw = build()
    answer = await orch.converse(turn("I had a rough day at work", ("assistant", "Hi!")))
    assert answer.reply == KAI
    assert (answer.fallback_step, answer.fallback_used) == ("model", False)
    assert answer.model == "llama-3.1-70b-instruct"
    safety = answer.safety
    assert (safety.verdict, safety.source, safety.guardrail_available) == (
        "allow",
        "guardrail",
        True,
    )
    assert safety.reply_checked and not safety.withheld and safety.crisis is None
    assert len(gw.calls_for("guardrail")) == 2  # the message, then Kai's draft
    kai_call = gw.calls_for("kai")[0].payload
    assert kai_call["messages"][0]["role"] == "system"
    assert kai_call["messages"][1:] == [
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": "I had a rough day at work"},
    ]


async def test_priorities_guardrail_first_analysis_last() -> None:
    orch, gw = build()
    await orch.converse(turn("hello"))
    await orch.analyze_genetic(AnalysisRequest(messages=[Turn(role="user", content="hi")]))
    await orch.analyze_wellness(AnalysisRequest(check_ins=[CheckIn(at="2024-05-01", mood=5)]))
    assert {c.priority for c in gw.calls_for("guardrail")} == {Priority.GUARDRAIL}
    assert {c.priority for c in gw.calls_for("kai")} == {Priority.INTERACTIVE}
    assert {c.priority for c in gw.calls_for("genetic")} == {Priority.ANALYSIS}
    assert {c.priority for c in gw.calls_for("wellness")} == {Priority.ANALYSIS}


async def test_the_guardrail_and_kais_draft_run_concurrently() -> None:
    orch, gw = build(check_reply=False)
    both = asyncio.Barrier(2)  # neither answers until both are in flight

    async def meet(answer: str) -> Any:
        async def action(_: dict[str, Any]) -> str:
            await both.wait()
            return answer

        return action

    gw.answer(
        "guardrail", await meet(as_json(GuardrailVerdict(verdict="allow", risk_level="none")))
    )
    gw.answer("kai", await meet(KAI))
    answer = await asyncio.wait_for(orch.converse(turn("hello")), 5)
    assert answer.reply == KAI


async def test_a_fallback_model_answer_says_so() -> None:
    orch, gw = build()
    gw.fallback["kai"] = True
    answer = await orch.converse(turn("hello"))
    assert (answer.fallback_step, answer.fallback_used) == ("fallback_model", True)
    assert answer.model == "llama-3.1-8b-instruct"


# Crisis --------------------------------------------------------------------------------------


async def test_a_crisis_gets_the_crisis_protocol_without_any_model() -> None:
    orch, gw = build()
    answer = await orch.converse(turn("I want to kill myself"))
    assert answer.fallback_step == "crisis_protocol" and answer.model is None
    assert "988" in answer.reply
    crisis = answer.safety.crisis
    assert crisis is not None and crisis.source == "crisis_detector"
    assert crisis.locale == "en-US" and any("988" in r.contact for r in crisis.resources)
    assert answer.safety.verdict == "crisis"
    assert gw.calls == []


@pytest.mark.parametrize(
    "failure",
    [DOWN, Overloaded("shed"), TimeoutError(), InvalidModelOutput("bad")],
    ids=["down", "shed", "timeout", "invalid"],
)
async def test_a_crisis_gets_resources_whatever_the_models_do(failure: BaseException) -> None:
    orch, gw = build()
    for agent in ("kai", "guardrail"):
        gw.always(agent, failure)
    answer = await orch.converse(turn("my dad hits me", locale="en-GB"))
    assert answer.fallback_step == "crisis_protocol"
    assert "116 123" in answer.reply and "0808 2000 247" in answer.reply  # abuse line too
    assert answer.safety.crisis is not None and answer.safety.crisis.locale == "en-GB"


async def test_a_crisis_the_guardrail_finds_gets_the_protocol_too() -> None:
    orch, gw = build()
    gw.answer("guardrail", as_json(CRISIS))
    answer = await orch.converse(turn("everything is too much, I have the blade here"))
    assert answer.fallback_step == "crisis_protocol"
    crisis = answer.safety.crisis
    assert crisis is not None and crisis.source == "guardrail"
    assert crisis.categories == ["self_harm"]
    assert "988" in answer.reply and KAI not in answer.reply


async def test_a_block_for_a_crisis_category_is_a_crisis() -> None:
    orch, gw = build()
    gw.answer(
        "guardrail",
        as_json(GuardrailVerdict(verdict="block", risk_level="high", categories=["suicide"])),
    )
    answer = await orch.converse(turn("how many would be enough"))
    assert answer.fallback_step == "crisis_protocol"


# The Guardrail decides -------------------------------------------------------------------------


async def test_a_blocked_message_withholds_kais_reply() -> None:
    orch, gw = build()
    gw.answer("guardrail", as_json(BLOCK))
    answer = await orch.converse(turn("how do I pick a lock"))
    assert answer.reply != KAI and answer.safety.withheld
    assert (answer.safety.verdict, answer.fallback_step) == ("block", "generic")
    assert answer.model is None


async def test_guardrail_down_fails_closed_by_default() -> None:
    orch, gw = build()
    gw.always("guardrail", DOWN)
    answer = await orch.converse(turn("I had a rough day"))
    assert answer.reply != KAI and answer.safety.withheld
    assert answer.safety.policy_applied == "fail_closed"
    assert answer.safety.guardrail_available is False
    assert (answer.safety.source, answer.safety.risk_level) == ("policy", "unknown")
    assert answer.notice is not None and "fail-closed" in answer.notice


async def test_guardrail_too_slow_fails_closed() -> None:
    orch, gw = build(guardrail_timeout_s=0.05)

    async def slow(_: dict[str, Any]) -> str:
        await asyncio.sleep(5)
        return "{}"

    gw.answer("guardrail", slow)
    answer = await orch.converse(turn("I had a rough day"))
    assert answer.safety.policy_applied == "fail_closed"
    assert answer.notice is not None and "timed out" in answer.notice


async def test_guardrail_down_fail_open_releases_and_says_so() -> None:
    orch, gw = build(guardrail_unavailable="fail_open")
    gw.always("guardrail", DOWN)
    answer = await orch.converse(turn("I had a rough day"))
    assert answer.reply.startswith(KAI) and not answer.safety.withheld
    assert "988" in answer.reply  # the Guardrail could not judge: a line with the resources
    assert answer.safety.policy_applied == "fail_open"
    assert answer.notice is not None and "fail-open" in answer.notice


async def test_kais_draft_is_held_back_when_the_reply_check_blocks_it() -> None:
    orch, gw = build()
    reply_block = GuardrailVerdict(
        verdict="block", risk_level="medium", categories=["unsupportive_reply"]
    )
    gw.answer("guardrail", as_json(GuardrailVerdict(verdict="allow", risk_level="none")))
    gw.answer("guardrail", as_json(reply_block))
    answer = await orch.converse(turn("hello"))
    assert answer.reply != KAI
    assert answer.safety.withheld and answer.safety.reply_checked
    assert answer.fallback_step == "generic"
    # The held-back draft was not cached: with Kai down, the same turn gets the generic reply.
    gw.always("kai", DOWN)
    again = await orch.converse(turn("hello"))
    assert again.fallback_step == "generic"


async def test_reply_check_down_fails_closed() -> None:
    orch, gw = build()
    gw.answer("guardrail", as_json(GuardrailVerdict(verdict="allow", risk_level="none")), DOWN)
    answer = await orch.converse(turn("hello"))
    assert answer.safety.withheld and answer.safety.policy_applied == "fail_closed"


async def test_caution_from_the_detector_is_kept_when_the_model_allows() -> None:
    orch, _ = build()
    answer = await orch.converse(turn("I would never hurt myself, I just feel flat"))
    assert answer.safety.verdict == "caution"
    assert answer.reply.startswith(KAI)
    assert "If things start to feel unsafe" in answer.reply  # a gentle offer of resources


async def test_a_held_draft_on_a_cautious_message_offers_resources_once() -> None:
    orch, gw = build()
    allow = as_json(GuardrailVerdict(verdict="allow", risk_level="none"))
    gw.answer("guardrail", allow, as_json(BLOCK))  # the message passes; Kai's draft does not
    answer = await orch.converse(turn("I would never hurt myself, I just feel flat"))
    assert answer.safety.withheld and answer.safety.verdict == "caution"
    assert answer.reply.count("If things start to feel unsafe") == 1


async def test_a_withheld_draft_under_fail_closed_offers_resources_once() -> None:
    orch, gw = build()
    allow = as_json(GuardrailVerdict(verdict="allow", risk_level="none"))
    gw.answer("guardrail", allow, DOWN)  # the draft's check cannot run: withheld
    answer = await orch.converse(turn("I would never hurt myself, I just feel flat"))
    assert answer.safety.withheld and answer.safety.policy_applied == "fail_closed"
    assert answer.reply.count("If things start to feel unsafe") == 1


# Fallback steps ------------------------------------------------------------------------------


async def test_kai_down_gives_the_cached_reply_then_a_generic_one() -> None:
    orch, gw = build()
    first = await orch.converse(turn("what helps with sleep?"))
    assert first.fallback_step == "model"
    gw.always("kai", DOWN)
    cached = await orch.converse(turn("what helps with sleep?"))
    # (the crisis classifier may add a gentle line with resources after the cached reply)
    assert cached.reply.startswith(KAI)
    assert (cached.fallback_step, cached.fallback_used) == ("cache", True)
    assert cached.model == first.model
    generic = await orch.converse(turn("something new"))
    assert generic.fallback_step == "generic" and generic.model is None
    assert generic.reply != KAI and not generic.safety.withheld


async def test_every_engine_down_a_seen_turn_comes_from_the_cache() -> None:
    orch, gw = build()
    await orch.converse(turn("what helps with sleep?"))
    gw.always("kai", DOWN)
    gw.always("guardrail", DOWN)
    cached = await orch.converse(turn("what helps with sleep?"))
    assert cached.fallback_step == "cache"
    assert cached.safety.source == "cache" and cached.safety.guardrail_available


async def test_cached_replies_expire() -> None:
    orch, gw = build(cache_ttl_s=10)
    await orch.converse(turn("what helps with sleep?"))
    gw.always("kai", DOWN)
    orch.cache._clock.now += 11  # type: ignore[attr-defined]
    answer = await orch.converse(turn("what helps with sleep?"))
    assert answer.fallback_step == "generic"


# Validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (turn(""), "empty"),
        (turn("x" * 101), "limit is 100"),
        (turn("hi", *[("user", "a")] * 4), "limit is 3"),
        (turn("hi", ("user", "y" * 101)), r"history\[0\]"),
    ],
)
async def test_bad_turns_are_refused(request_: ConverseRequest, match: str) -> None:
    orch, gw = build(max_message_chars=100, max_history_turns=3)
    with pytest.raises(BadRequest, match=match):
        await orch.converse(request_)
    assert gw.calls == []


# The Guardrail check route -------------------------------------------------------------------


async def test_check_a_message() -> None:
    orch, gw = build()
    gw.answer("guardrail", as_json(BLOCK))
    verdict = await orch.check(GuardrailCheckRequest(text="how do I pick a lock"))
    assert (verdict.verdict, verdict.source, verdict.fallback_step) == (
        "block",
        "guardrail",
        "model",
    )
    assert verdict.model == "llama-3.1-8b-instruct"
    assert verdict.crisis is None


async def test_check_a_crisis_needs_no_model() -> None:
    orch, gw = build()
    verdict = await orch.check(GuardrailCheckRequest(text="I want to end my life", locale="en-AU"))
    assert (verdict.verdict, verdict.source) == ("crisis", "crisis_detector")
    assert verdict.crisis is not None
    assert any("13 11 14" in r.contact for r in verdict.crisis.resources)
    assert gw.calls == []


async def test_check_with_the_guardrail_down_applies_the_policy() -> None:
    orch, gw = build()
    gw.always("guardrail", DOWN)
    verdict = await orch.check(GuardrailCheckRequest(text="hello"))
    assert (verdict.verdict, verdict.source, verdict.policy_applied) == (
        "block",
        "policy",
        "fail_closed",
    )
    assert verdict.guardrail_available is False and verdict.fallback_step == "generic"


async def test_check_an_assistant_reply_uses_the_model_only() -> None:
    orch, gw = build()
    verdict = await orch.check(
        GuardrailCheckRequest(text="If you want to kill yourself, call 988.", role="assistant")
    )
    assert verdict.source == "guardrail"
    assert "assistant's reply" in gw.calls[0].payload["messages"][1]["content"]


# Analyses ------------------------------------------------------------------------------------


async def test_analyses_answer_with_validated_structs() -> None:
    orch, _ = build()
    genetic = await orch.analyze_genetic(
        AnalysisRequest(messages=[Turn(role="user", content="I like plans")])
    )
    assert genetic.fallback_step == "model" and genetic.model == "qwen-2.5-32b-instruct"
    wellness = await orch.analyze_wellness(
        AnalysisRequest(check_ins=[CheckIn(at="2024-05-01", mood=6, note="ok day")])
    )
    assert wellness.insights.urgency == "none" and wellness.crisis is None


async def test_analysis_fallbacks_cache_then_generic() -> None:
    orch, gw = build()
    request = AnalysisRequest(
        check_ins=[CheckIn(at=f"d{i}", mood=m) for i, m in enumerate([7, 5, 3])]
    )
    first = await orch.analyze_wellness(request)
    gw.always("wellness", DOWN)
    cached = await orch.analyze_wellness(request)
    assert (cached.fallback_step, cached.insights) == ("cache", first.insights)
    other = AnalysisRequest(
        check_ins=[CheckIn(at=f"d{i}", mood=m) for i, m in enumerate([8, 6, 2])]
    )
    generic = await orch.analyze_wellness(other)
    assert generic.fallback_step == "generic" and generic.insights.trend == "declining"
    assert generic.notice is not None


async def test_analysis_invalid_twice_is_an_error_and_shedding_is_passed_on() -> None:
    orch, gw = build()
    request = AnalysisRequest(messages=[Turn(role="user", content="hi")])
    gw.answer("genetic", "not json", "still not json")
    with pytest.raises(InvalidModelOutput):
        await orch.analyze_genetic(request)
    gw.always("genetic", Overloaded("shed", retry_after=2))
    with pytest.raises(Overloaded):
        await orch.analyze_genetic(request)


async def test_a_crisis_in_the_history_raises_wellness_urgency() -> None:
    orch, _ = build()
    answer = await orch.analyze_wellness(
        AnalysisRequest(
            check_ins=[CheckIn(at="2024-05-01", mood=2, note="I want to die")], locale="en-IE"
        )
    )
    assert answer.insights.urgency == "urgent"
    assert answer.insights.suggested_action.kind == "crisis_support"
    assert answer.crisis is not None and answer.crisis.locale == "en-IE"
    assert any("116 123" in r.contact for r in answer.crisis.resources)


async def test_analysis_validation() -> None:
    orch, _ = build(max_analysis_items=2)
    with pytest.raises(BadRequest, match="at least one"):
        await orch.analyze_genetic(AnalysisRequest())
    with pytest.raises(BadRequest, match="at most 2"):
        await orch.analyze_genetic(AnalysisRequest(messages=[Turn(role="user", content="a")] * 3))


# Privacy -------------------------------------------------------------------------------------


async def test_no_user_text_reaches_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    orch, gw = build()
    secrets = ["Ondine is my sister", "Quillon mood swings", "Zephyrine ate lunch"]
    with caplog.at_level(logging.DEBUG):
        await orch.converse(turn(secrets[0], ("user", secrets[1])))
        gw.always("kai", DOWN)
        gw.answer("guardrail", "garbage " + secrets[2], "more garbage")
        await orch.converse(turn(secrets[2]))
        await orch.check(GuardrailCheckRequest(text=secrets[0]))
        await orch.analyze_wellness(
            AnalysisRequest(check_ins=[CheckIn(at="2024-05-01", note=secrets[1])])
        )
    assert caplog.records, "the test must see log records"
    for secret in secrets:
        assert secret.split()[0] not in caplog.text


async def test_a_long_history_is_screened_too() -> None:
    orch, _ = build(max_analysis_items=200)
    filler = "I walked by the river and thought about the week. " * 150
    notes = [CheckIn(at=f"d{i}", note=filler) for i in range(5)]
    notes.append(CheckIn(at="d9", note="I want to die"))
    answer = await orch.analyze_wellness(AnalysisRequest(check_ins=notes))
    assert answer.crisis is not None and answer.insights.urgency == "urgent"
