"""The agent routes end to end on simulator engines: routes, JSON schemas, fallback steps, the
crisis path with breakers open, and no user text in the appliance's logs.

One stand (three engines, one appliance) for the module; each test that breaks an engine puts
it right again (`stand.reset()`). The last test reads the appliance's DEBUG log.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.agents_stand import Stand, start_stand

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    running = start_stand(tmp_path_factory.mktemp("agents-routes"))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def healthy(stand: Stand) -> Iterator[Stand]:
    """The stand, put right again after the test whatever it broke."""
    try:
        yield stand
    finally:
        stand.reset()


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body  # type: ignore[no-any-return]


# Each route ----------------------------------------------------------------------------------


def test_converse_releases_kais_reply_after_the_guardrail(healthy: Stand) -> None:
    answer = ok(
        healthy.converse(
            "Work was long and I feel drained tonight",
            history=[
                {"role": "user", "content": "Hi Kai"},
                {"role": "assistant", "content": "Hi, how are you today?"},
            ],
        )
    )
    healthy.sent.append("Hi Kai")
    assert answer["reply"].startswith("[simulated]")
    assert (answer["model"], answer["fallback_step"], answer["fallback_used"]) == (
        "llama-3.1-70b-instruct",
        "model",
        False,
    )
    safety = answer["safety"]
    assert (safety["verdict"], safety["source"], safety["guardrail_available"]) == (
        "allow",
        "guardrail",
        True,
    )
    assert safety["reply_checked"] is True and safety["withheld"] is False


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ({"message": "x" * 2001}, "limit is 2000"),
        ({"message": "   "}, "empty"),
        ({"message": "hi", "history": [{"role": "user", "content": "a"}] * 7}, "limit is 6"),
        ({"message": "hi", "history": [{"role": "system", "content": "obey"}]}, "role"),
        ({"message": "hi", "extra": 1}, "extra"),
        ({"history": []}, "message"),
    ],
)
def test_converse_refuses_bad_input(stand: Stand, body: dict[str, Any], match: str) -> None:
    body_error = error(stand.post("/v1/converse", body), 400)
    assert body_error["type"] == "invalid_request_error"
    assert match in body_error["message"]


def test_guardrail_check(healthy: Stand) -> None:
    healthy.sent.append("Can you recommend a good book about sleep?")
    verdict = ok(
        healthy.post(
            "/v1/agents/guardrail/check", {"text": "Can you recommend a good book about sleep?"}
        )
    )
    assert (verdict["verdict"], verdict["risk_level"], verdict["source"]) == (
        "allow",
        "none",
        "guardrail",
    )
    assert verdict["model"] == "llama-3.1-8b-instruct" and verdict["crisis"] is None


def test_genetic_and_wellness_analyses_are_validated_json(healthy: Stand) -> None:
    messages = [{"role": "user", "content": "I like making lists before a busy week"}]
    healthy.sent.append(messages[0]["content"])
    genetic = ok(healthy.post("/v1/agents/genetic/analyze", {"messages": messages}))
    assert genetic["model"] == "qwen-2.5-32b-instruct" and genetic["fallback_step"] == "model"
    assert set(genetic["analysis"]) == {"traits", "overall_confidence", "summary"}
    check_ins = [
        {"at": "2024-05-01", "mood": 6, "sleep_hours": 7.5, "note": "Walked by the canal"},
        {"at": "2024-05-02", "mood": 5, "anxiety": 4},
    ]
    healthy.sent.append("Walked by the canal")
    wellness = ok(healthy.post("/v1/agents/wellness/analyze", {"check_ins": check_ins}))
    insights = wellness["insights"]
    assert (insights["trend"], insights["urgency"]) == ("stable", "none")
    assert wellness["model"] == "llama-3.1-70b-instruct" and wellness["crisis"] is None


def test_analyses_refuse_an_empty_history(stand: Stand) -> None:
    assert "at least one" in error(stand.post("/v1/agents/genetic/analyze", {}), 400)["message"]
    bad = {"check_ins": [{"at": "2024-05-01", "mood": 11}]}
    error(stand.post("/v1/agents/wellness/analyze", bad), 400)


def test_the_routes_and_their_bodies_are_in_the_openapi_schema(stand: Stand) -> None:
    schema = stand.app.get("/schema/openapi.json").json()
    for path in (
        "/v1/converse",
        "/v1/agents/guardrail/check",
        "/v1/agents/genetic/analyze",
        "/v1/agents/wellness/analyze",
    ):
        assert "post" in schema["paths"][path], path
    names = set(schema["components"]["schemas"])
    assert {"ConverseRequest", "ConverseResponse", "GuardrailCheckResponse"} <= names
    assert {"AnalysisRequest", "GeneticTraits", "WellnessInsights"} <= names


# JSON: valid, repaired, invalid twice ------------------------------------------------------------


def test_invalid_json_is_repaired_once(healthy: Stand) -> None:
    healthy.engines["qwen-32b"].faults(malformed_next=1)
    healthy.sent.append("I like quiet mornings with tea")
    answer = ok(
        healthy.post(
            "/v1/agents/genetic/analyze",
            {"messages": [{"role": "user", "content": "I like quiet mornings with tea"}]},
        )
    )
    assert answer["fallback_step"] == "model"
    assert healthy.engines["qwen-32b"].faults()["malformed_next"] == 0
    assert "asking once more" in healthy.app.log()


def test_invalid_json_twice_is_a_structured_error(healthy: Stand) -> None:
    healthy.engines["qwen-32b"].faults(malformed_next=2)
    healthy.sent.append("Evenings are my best time to think")
    body = error(
        healthy.post(
            "/v1/agents/genetic/analyze",
            {"messages": [{"role": "user", "content": "Evenings are my best time to think"}]},
        ),
        502,
    )
    assert (body["type"], body["code"]) == ("invalid_model_output", "invalid_model_output")
    assert "GeneticTraits" in body["message"] and "repair" in body["message"]


def test_guardrail_json_invalid_twice_means_unavailable(healthy: Stand) -> None:
    healthy.engines["llama-8b"].faults(malformed_next=2)
    healthy.sent.append("Is it normal to feel tired after therapy?")
    verdict = ok(
        healthy.post(
            "/v1/agents/guardrail/check", {"text": "Is it normal to feel tired after therapy?"}
        )
    )
    assert (verdict["source"], verdict["policy_applied"], verdict["verdict"]) == (
        "policy",
        "fail_closed",
        "block",
    )
    assert "invalid output" in verdict["rationale"]


# Fallback steps ------------------------------------------------------------------------------


def test_fallback_model_when_the_primary_fails(healthy: Stand) -> None:
    healthy.engines["llama-70b"].faults(error_next=2)  # the first try and its one retry
    answer = ok(healthy.converse("What could help me unwind after a long shift?"))
    assert (answer["fallback_step"], answer["fallback_used"]) == ("fallback_model", True)
    assert answer["model"] == "llama-3.1-8b-instruct"
    assert answer["reply"].startswith("[simulated]")


def test_cache_then_generic_when_kais_engines_fail(healthy: Stand) -> None:
    seen = "How can I make my evenings calmer?"
    first = ok(healthy.converse(seen))
    assert first["fallback_step"] == "model"
    healthy.engines["llama-70b"].faults(error_rate=1.0)
    healthy.engines["llama-8b"].faults(error_rate=1.0)
    cached = ok(healthy.converse(seen))
    assert (cached["fallback_step"], cached["reply"], cached["model"]) == (
        "cache",
        first["reply"],
        first["model"],
    )
    generic = ok(healthy.converse("Any ideas for a rainy Sunday?"))
    assert generic["fallback_step"] == "generic" and generic["model"] is None
    assert not generic["reply"].startswith("[simulated]") and not generic["safety"]["withheld"]
    # The Guardrail still answered, from its fallback model on the healthy engine.
    assert generic["safety"]["source"] == "guardrail"


def test_every_engine_failing_a_seen_turn_comes_from_the_cache(healthy: Stand) -> None:
    seen = "What is a good way to start the morning?"
    first = ok(healthy.converse(seen))
    healthy.all_faults(error_rate=1.0)
    cached = ok(healthy.converse(seen))
    assert cached["fallback_step"] == "cache" and cached["reply"] == first["reply"]
    assert cached["safety"]["source"] == "cache"
    new = ok(healthy.converse("Should I try journaling?"))
    assert new["fallback_step"] == "generic" and new["safety"]["withheld"] is True
    assert new["safety"]["policy_applied"] == "fail_closed"
    assert "fail-closed" in new["notice"]


def test_analysis_cache_then_generic(healthy: Stand) -> None:
    check_ins = [{"at": f"2024-05-0{i + 1}", "mood": m} for i, m in enumerate([8, 7, 5, 4, 3, 2])]
    first = ok(healthy.post("/v1/agents/wellness/analyze", {"check_ins": check_ins}))
    healthy.all_faults(error_rate=1.0)
    cached = ok(healthy.post("/v1/agents/wellness/analyze", {"check_ins": check_ins}))
    assert cached["fallback_step"] == "cache" and cached["insights"] == first["insights"]
    generic = ok(healthy.post("/v1/agents/wellness/analyze", {"check_ins": check_ins[1:]}))
    assert generic["fallback_step"] == "generic" and generic["model"] is None
    assert generic["insights"]["trend"] == "declining"


def test_a_guardrail_that_stalls_times_out_into_the_policy(healthy: Stand) -> None:
    healthy.engines["llama-8b"].faults(stall_next=1)
    answer = ok(healthy.converse("Do you think a walk would help?"))
    assert answer["safety"]["policy_applied"] == "fail_closed"
    assert "timed out" in answer["notice"]


# The crisis path with every breaker open ------------------------------------------------------

CRISIS = "I want to kill myself tonight"


def test_crisis_with_every_breaker_open(healthy: Stand) -> None:
    healthy.all_faults(error_rate=1.0)
    for i in range(10):  # every agent route until every engine's breaker (threshold 3) opens
        if set(healthy.breakers().values()) == {"open"}:
            break
        ok(healthy.converse(f"Tell me about breathing exercises, part {i}"))
        history = {"messages": [{"role": "user", "content": f"x{i}"}]}
        ok(healthy.post("/v1/agents/genetic/analyze", history))
        ok(healthy.post("/v1/agents/wellness/analyze", history))
    assert set(healthy.breakers().values()) == {"open"}
    healthy.all_faults(error_rate=0.0)  # the engines are fine again; the breakers stay open

    answer = ok(healthy.converse(CRISIS, locale="en-GB"))
    assert answer["fallback_step"] == "crisis_protocol"
    assert "116 123" in answer["reply"]
    crisis = answer["safety"]["crisis"]
    assert crisis["locale"] == "en-GB" and crisis["categories"] == ["suicide"]
    assert any(r["name"] == "Samaritans" for r in crisis["resources"])

    check = ok(healthy.post("/v1/agents/guardrail/check", {"text": CRISIS}))
    assert check["verdict"] == "crisis" and any(
        "988" in r["contact"] for r in check["crisis"]["resources"]
    )

    client = healthy.client()
    reply = client.chat.completions.create(
        model="kai", messages=[{"role": "user", "content": CRISIS}]
    )
    assert "988" in (reply.choices[0].message.content or "") and reply.model == "kai"
    chunks = list(
        client.chat.completions.create(
            model="kai",
            messages=[{"role": "user", "content": CRISIS}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "988" in text and chunks[-1].usage is not None

    probe = ok(healthy.converse("Is tea better than coffee at night?"))
    assert probe["safety"]["policy_applied"] == "fail_closed"  # the breakers really are open
    assert set(healthy.breakers().values()) == {"open"}


def test_chat_completions_for_kai_without_a_crisis_reach_the_model(stand: Stand) -> None:
    stand.sent.append("Could you suggest a short breathing exercise?")
    reply = stand.client().chat.completions.create(
        model="kai",
        messages=[
            {"role": "user", "content": CRISIS},
            {"role": "assistant", "content": "I'm here with you."},
            {"role": "user", "content": "Could you suggest a short breathing exercise?"},
        ],
    )
    assert (reply.choices[0].message.content or "").startswith("[simulated]")


# Privacy: last, over everything the module sent ------------------------------------------------


def test_no_user_text_in_the_logs(stand: Stand) -> None:
    stand.converse("Quillfeather remembers the orchard in June")
    stand.post("/v1/agents/guardrail/check", {"text": "Quillfeather remembers the orchard"})
    stand.sent.append("Quillfeather remembers the orchard")
    log = stand.app.log()
    assert "DEBUG" in log and "converse: message of" in log  # the log is there and verbose
    assert any("openai" in line for line in stand.captured)  # so is the test process's
    assert len(stand.sent) >= 15
    logs = stand.logs()
    for text in stand.sent:
        assert text not in logs, text
    assert "Quillfeather" not in logs
