"""The crisis path when engines are killed: first the Guardrail's engines, then every engine.

Killed engines stay dead (the stand's engines have no supervisor), so each test's failure holds
for the whole test; a non-crisis probe in each test shows it does. Crisis replies carry the
locale's resources in every case. Tests run in order on one stand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.agents_stand import Stand, start_stand

pytestmark = pytest.mark.integration

SEEN = "What helps you wind down after a hard day?"


@pytest.fixture(scope="module")
def stand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stand]:
    running = start_stand(tmp_path_factory.mktemp("agents-failures"))
    try:
        yield running
    finally:
        running.stop()


def ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def contacts(notice: dict[str, Any]) -> str:
    return " ".join(r["contact"] for r in notice["resources"])


def test_a_turn_seen_while_healthy(stand: Stand) -> None:
    answer = ok(stand.converse(SEEN))
    assert answer["fallback_step"] == "model"


def test_crisis_with_the_guardrail_engines_killed(stand: Stand) -> None:
    stand.engines["llama-8b"].kill()  # the Guardrail's model
    stand.engines["qwen-32b"].kill()  # and its fallback model

    answer = ok(stand.converse("I keep thinking about ending my life"))
    assert answer["fallback_step"] == "crisis_protocol"
    assert "988" in answer["reply"] and "988" in contacts(answer["safety"]["crisis"])

    stand.sent.append("I have been cutting myself again")
    check = ok(
        stand.post("/v1/agents/guardrail/check", {"text": "I have been cutting myself again"})
    )
    assert check["verdict"] == "crisis" and "988" in contacts(check["crisis"])

    stand.sent.append("Sometimes I want to die")
    reply = stand.client().chat.completions.create(
        model="kai", messages=[{"role": "user", "content": "Sometimes I want to die"}]
    )
    assert "988" in (reply.choices[0].message.content or "")

    probe = ok(stand.converse("Can we talk about my week?"))
    assert probe["safety"]["guardrail_available"] is False
    assert probe["safety"]["policy_applied"] == "fail_closed" and probe["safety"]["withheld"]


def test_crisis_with_every_engine_killed(stand: Stand) -> None:
    stand.engines["llama-70b"].kill()
    assert not any(engine.alive() for engine in stand.engines.values())

    answer = ok(stand.converse("My husband hits me and I'm scared to go home", locale="en-AU"))
    assert answer["fallback_step"] == "crisis_protocol" and answer["model"] is None
    crisis = answer["safety"]["crisis"]
    assert crisis["locale"] == "en-AU" and "abuse" in crisis["categories"]
    assert "13 11 14" in answer["reply"] and "1800 737 732" in answer["reply"]

    stand.sent.append("I am going to kill myself")
    chunks = list(
        stand.client().chat.completions.create(
            model="kai",
            messages=[{"role": "user", "content": "I am going to kill myself"}],
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "988" in text

    note = "I don't want to be alive anymore"
    stand.sent.append(note)
    wellness = ok(
        stand.post(
            "/v1/agents/wellness/analyze", {"check_ins": [{"at": "2024-05-01", "note": note}]}
        )
    )
    assert wellness["insights"]["urgency"] == "urgent"
    assert wellness["insights"]["suggested_action"]["kind"] == "crisis_support"
    assert wellness["fallback_step"] == "generic" and "988" in contacts(wellness["crisis"])

    cached = ok(stand.converse(SEEN))
    assert cached["fallback_step"] == "cache"
    new = ok(stand.converse("Is it silly to name my plants?"))
    assert new["fallback_step"] == "generic" and new["safety"]["withheld"]

    genetic = ok(
        stand.post("/v1/agents/genetic/analyze", {"messages": [{"role": "user", "content": SEEN}]})
    )
    assert genetic["fallback_step"] == "generic" and genetic["analysis"]["traits"] == []


def test_crisis_on_a_served_model_when_no_engine_answers(stand: Stand) -> None:
    """Even the plain passthrough answers a crisis with resources when the engines are gone."""
    assert not any(engine.alive() for engine in stand.engines.values())
    message = "i want to end my life tonight"
    stand.sent.append(message)
    for model in ("default", "llama-3.1-8b-instruct"):
        reply = stand.client().chat.completions.create(
            model=model, messages=[{"role": "user", "content": message}]
        )
        assert "988" in (reply.choices[0].message.content or "")
    # A non-crisis message on the same dead engines still gets the honest 503.
    with pytest.raises(openai.InternalServerError) as info:
        stand.client().chat.completions.create(
            model="default", messages=[{"role": "user", "content": "what is for dinner"}]
        )
    assert info.value.status_code == 503


def test_no_user_text_in_the_logs(stand: Stand) -> None:
    assert "crisis protocol" in stand.app.log()
    logs = stand.logs()
    for text in stand.sent:
        assert text not in logs, text
