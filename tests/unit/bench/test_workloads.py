from __future__ import annotations

from collections import Counter

from appliance.bench.workloads import MARKER, SHAPES, Workload


def test_same_seed_same_requests_other_seed_other_requests() -> None:
    a, b, c = Workload(1), Workload(1), Workload(2)
    assert a.agent_requests("kai", 5) == b.agent_requests("kai", 5)
    assert a.agent_requests("kai", 5) != c.agent_requests("kai", 5)


def test_every_message_is_marked_synthetic() -> None:
    w = Workload(3)
    for agent in SHAPES:
        for req in w.agent_requests(agent, 10):
            assert all(MARKER in m["content"] for m in req.messages)


def test_shapes_follow_the_agents() -> None:
    w = Workload(0)
    kai = w.agent_requests("kai", 50)
    assert all(80 <= r.max_tokens <= 125 for r in kai)
    assert all(len(r.messages) >= 5 and r.messages[-1]["role"] == "user" for r in kai)
    guard = w.agent_requests("guardrail", 50)
    assert all(len(r.messages) == 1 and r.max_tokens <= 60 for r in guard)
    genetic = w.agent_requests("genetic", 50)
    assert all(80 <= r.max_tokens <= 130 for r in genetic)
    assert all(r.messages[0]["content"].count("check-in") >= 5 for r in genetic)


def test_answers_are_capped_at_the_agents_max_tokens() -> None:
    w = Workload(0, {"kai": 100})
    assert max(r.max_tokens for r in w.agent_requests("kai", 50)) == 100


def test_mix_has_two_guardrail_checks_per_kai_turn_and_some_analysis() -> None:
    reqs = Workload(5).mix_requests(3000)
    counts = Counter(r.agent for r in reqs)
    assert len(reqs) == 3000
    assert abs(counts["guardrail"] - 2 * counts["kai"]) <= 2
    analysis = counts["genetic"] + counts["wellness"]
    assert 0.1 < analysis / counts["kai"] < 0.3  # about 0.2 per turn
