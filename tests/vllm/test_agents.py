"""The four agents over the real engine with the project's defaults: guided JSON must hold."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tests.vllm.conftest import VllmAppliance

MESSAGES = [
    "I had a rough day at work but I am ok",
    "Can you help me plan a calmer morning routine?",
    "My sister and I argued again and I feel drained.",
    "I slept well for once and went for a run.",
    "Work is piling up and I can't focus.",
]
CALLS_PER_AGENT = 36  # 108 model calls with guided JSON, plus a few conversation turns


def guardrail(appliance: VllmAppliance, n: int) -> dict[str, Any]:
    response = appliance.post("/v1/agents/guardrail/check", json={"text": MESSAGES[n % 5]})
    assert response.status_code == 200, response.text
    return response.json()


def genetic(appliance: VllmAppliance, n: int) -> dict[str, Any]:
    history = [{"role": "user", "content": m} for m in MESSAGES[: 2 + n % 4]]
    response = appliance.post("/v1/agents/genetic/analyze", json={"messages": history})
    assert response.status_code == 200, response.text
    return response.json()


def wellness(appliance: VllmAppliance, n: int) -> dict[str, Any]:
    check_ins = [
        {"at": f"2026-01-0{d + 1}", "mood": 1 + (n + d) % 10, "energy": 1 + (n * d) % 10}
        for d in range(1 + n % 5)
    ]
    response = appliance.post("/v1/agents/wellness/analyze", json={"check_ins": check_ins})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_agent_answers_from_the_model_with_schema_valid_json(appliance: VllmAppliance):
    offset = len(appliance.log())
    calls = [
        (agent, n)
        for n, agent in itertools.product(range(CALLS_PER_AGENT), (guardrail, genetic, wellness))
    ]
    # Two at a time: more would meet the admission control that sheds analyses (correctly).
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(
            pool.map(lambda call: (call[0].__name__, call[0](appliance, call[1])), calls)
        )

    by_agent: dict[str, list[dict[str, Any]]] = {}
    for agent, body in answers:
        by_agent.setdefault(agent, []).append(body)
    # The Guardrail judged every message itself; neither cache nor policy stood in.
    assert {b["source"] for b in by_agent["guardrail"]} == {"guardrail"}
    assert all(b["guardrail_available"] for b in by_agent["guardrail"])
    for agent in ("genetic", "wellness"):
        assert {b["fallback_step"] for b in by_agent[agent]} == {"model"}, agent
    log = appliance.log()[offset:]
    invalid = log.count("answered JSON that does not match")
    validity = 1 - invalid / len(calls)
    print(
        f"\nguided JSON: {len(calls) - invalid}/{len(calls)} first answers schema-valid "
        f"({validity:.1%})"
    )
    assert len(calls) >= 100 and validity >= 0.99

    turn = appliance.post("/v1/converse", json={"message": "Hello, how are you?"})
    assert turn.status_code == 200, turn.text
    body = turn.json()
    assert body["safety"]["source"] == "guardrail"
    assert body["model"] == "tiny-llama" or body["safety"]["withheld"]


def test_a_prompt_beyond_max_model_len_is_logged_with_the_engines_reason(
    appliance: VllmAppliance,
):
    offset = len(appliance.log())
    canary = "zebracanary"
    # Under max_message_chars (8,000), yet thousands of tokens: beyond max_model_len 2048.
    text = " ".join(f"{canary}{i}" for i in range(450))
    response = appliance.post("/v1/agents/guardrail/check", json={"text": text})
    assert response.status_code == 200
    assert response.json()["source"] == "policy"  # the Guardrail could not judge it
    log = appliance.log()[offset:]
    assert "engine tiny-llama refused a request: 400" in log
    assert "maximum context length" in log or "max_model_len" in log
    assert canary not in log
