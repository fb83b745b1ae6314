"""The Guardrail rule: each of its decisions, with and without a verdict, under either policy."""

from __future__ import annotations

from typing import Literal

import pytest

from appliance.agents.calling import Answer
from appliance.agents.crisis import CrisisSignal
from appliance.agents.detector import Detection
from appliance.agents.guardrail import Unavailable
from appliance.agents.policy import GuardrailPolicy, Judged, ReplyRuling, worse
from appliance.agents.schemas import FallbackStep, GuardrailVerdict, Verdict
from appliance.config.schema import SafetyConfig

DOWN = Unavailable("timed out")
NONE = CrisisSignal("none")
CAUTION = CrisisSignal("caution", ("self_harm",))
CRISIS = CrisisSignal("crisis", ("suicide",))
Policy = Literal["fail_closed", "fail_open"]


def rule(unavailable: Policy = "fail_closed", *, check_reply: bool = True) -> GuardrailPolicy:
    return GuardrailPolicy(SafetyConfig(guardrail_unavailable=unavailable, check_reply=check_reply))


def said(
    verdict: Verdict, *categories: str, step: FallbackStep = "model"
) -> Answer[GuardrailVerdict]:
    value = GuardrailVerdict(
        verdict=verdict,
        risk_level="high" if verdict == "crisis" else "low",
        categories=list(categories),  # type: ignore[arg-type]
    )
    return Answer(value, step, "guard-model")


def found(signal: CrisisSignal) -> Detection:
    return Detection(signal, "classifier" if signal.level != "none" else None)


# Rule 1: who found a crisis ---------------------------------------------------------------------


def test_the_guardrails_crisis_or_crisis_block_is_a_crisis() -> None:
    assert rule().crisis_source(said("crisis", "self_harm"), found(NONE)) == "guardrail"
    assert rule().crisis_source(said("block", "abuse"), found(NONE)) == "guardrail"
    assert rule().crisis_source(said("block", "illegal_activity"), found(NONE)) is None


def test_a_detector_crisis_the_guardrail_judged_is_not_the_protocols() -> None:
    assert rule().crisis_source(said("allow"), found(CRISIS)) is None


@pytest.mark.parametrize("unavailable", ["fail_closed", "fail_open"])
def test_without_a_verdict_the_classifier_decides_a_crisis_under_either_policy(
    unavailable: Policy,
) -> None:
    assert rule(unavailable).crisis_source(DOWN, found(CRISIS)) == "classifier"
    assert rule(unavailable).crisis_source(DOWN, found(CAUTION)) is None


# Rule 2: the Guardrail judged -------------------------------------------------------------------


def test_a_crisis_the_guardrail_did_not_share_is_a_caution() -> None:
    assert rule().heeded(said("allow"), CRISIS) == CrisisSignal("caution", ("suicide",))
    assert rule().heeded(said("allow"), CAUTION) == CAUTION
    assert rule().heeded(DOWN, CRISIS) == CRISIS  # no verdict: the crisis stands


def test_the_verdict_is_raised_to_the_detectors_caution_never_lowered() -> None:
    raised = rule().judge(said("allow", "none"), CAUTION)
    assert (raised.verdict, raised.available, raised.source) == ("caution", True, "guardrail")
    assert (raised.policy, raised.why, raised.categories) == (None, None, ["none"])
    assert rule().judge(said("block", "hate"), CAUTION).verdict == "block"
    assert rule().judge(said("allow"), NONE).verdict == "allow"
    assert rule().judge(said("allow", step="cache"), NONE).source == "cache"
    assert worse("caution", "block") == worse("block", "caution") == "block"


def test_a_block_declines_and_nothing_else_the_guardrail_says_withholds() -> None:
    assert rule().withholds(rule().judge(said("block", "hate"), NONE)) == "declined"
    assert rule().withholds(rule().judge(said("caution"), NONE)) is None
    assert rule("fail_open").withholds(rule("fail_open").judge(said("allow"), NONE)) is None


# Rule 3: no verdict on the message --------------------------------------------------------------


def test_fail_closed_blocks_and_withholds() -> None:
    policy = rule("fail_closed")
    judged = policy.judge(DOWN, CAUTION)
    assert (judged.verdict, judged.risk_level, judged.source) == ("block", "unknown", "policy")
    assert (judged.available, judged.policy, judged.why) == (False, "fail_closed", "timed out")
    assert judged.categories == ["self_harm"]
    assert policy.withholds(judged) == "withheld"


@pytest.mark.parametrize(("signal", "verdict"), [(NONE, "allow"), (CAUTION, "caution")])
def test_fail_open_keeps_the_detectors_level_and_releases(
    signal: CrisisSignal, verdict: Verdict
) -> None:
    policy = rule("fail_open")
    judged = policy.judge(DOWN, signal)
    assert (judged.verdict, judged.source, judged.available) == (verdict, "policy", False)
    assert judged.policy == "fail_open"
    assert policy.withholds(judged) is None


# Rule 4: the check of Kai's draft ---------------------------------------------------------------


def test_a_draft_is_released_unchecked_when_the_check_is_off() -> None:
    assert rule(check_reply=False).on_reply(None) == ReplyRuling("release")


def test_a_draft_the_guardrail_releases_is_checked() -> None:
    assert rule().on_reply(said("caution")) == ReplyRuling("release", checked=True)


def test_a_draft_the_guardrail_does_not_release_is_held() -> None:
    assert rule().on_reply(said("block", "hate")) == ReplyRuling("hold", verdict="block")
    assert rule("fail_open").on_reply(said("crisis")).action == "hold"


def test_no_verdict_on_the_draft_is_the_same_policy() -> None:
    closed = rule("fail_closed").on_reply(DOWN)
    assert closed == ReplyRuling("withhold", policy="fail_closed", why="timed out")
    opened = rule("fail_open").on_reply(DOWN)
    assert opened == ReplyRuling("release", policy="fail_open", why="timed out")
    assert not opened.checked


# Rule 5: the resources line and the cache -------------------------------------------------------


def judged_up() -> Judged:
    return rule().judge(said("allow"), NONE)


def test_only_a_reply_with_every_verdict_asked_for_is_cached() -> None:
    policy = rule("fail_open")
    down = policy.judge(DOWN, NONE)
    assert policy.caches(judged_up(), ReplyRuling("release", checked=True))
    assert not policy.caches(judged_up(), policy.on_reply(DOWN))
    assert not policy.caches(down, ReplyRuling("release", checked=True))
    unchecked = rule(check_reply=False)
    assert unchecked.caches(judged_up(), unchecked.on_reply(None))
    assert not unchecked.caches(unchecked.judge(DOWN, NONE), unchecked.on_reply(None))


def test_a_reply_without_a_verdict_it_needed_carries_the_resources_line() -> None:
    policy = rule("fail_open")
    assert not policy.unjudged(judged_up())
    assert not policy.unjudged(judged_up(), "fail_closed")
    assert policy.unjudged(judged_up(), "fail_open")  # the draft's check could not run
    assert policy.unjudged(policy.judge(DOWN, NONE))
