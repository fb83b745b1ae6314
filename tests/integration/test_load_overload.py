"""Three times more work than one engine can do: the guardrail keeps its objective, analyses go first.

One simulated 8B engine (4 sequences, time scale 0.5) serves all four agents, as in the guide's
budget configuration. The test sends an open-loop mix of conversation turns (a guardrail check of
the message, Kai's answer, a guardrail check of the answer; an analysis every other turn) at three
times the rate the engine can finish them, and looks at what came back.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest

from appliance.bench.stats import percentile
from tests.support.load_stand import stand_config
from tests.support.running import Appliance

pytestmark = pytest.mark.integration

TIME_SCALE = 0.5
# Answer lengths (exact: sent with ignore_eos) and the requests of one turn.
TOKENS = {"guardrail": 12, "kai": 80, "genetic": 120, "wellness": 120}
# Slot-seconds per turn on this engine, from the simulator's model (8B: 50 tokens/s, 4 running;
# the agents' system prompts included): 2 x 0.17 (guardrail) + 0.85 (Kai) + 0.5 x 1.24
# (analysis) = 1.8, so 4 slots finish about 2.2 turns/s.
CAPACITY_TURNS_PER_S = 2.2
OVERLOAD = 3.0
DURATION_S = 6.0
# Objectives, time-scaled: the guide's upper P95 x 0.5.
OBJECTIVE_S = {"guardrail": 1.0, "kai": 4.0, "genetic": 2.5, "wellness": 4.0}
QUEUE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Outcome:
    agent: str
    status: int
    seconds: float
    retry_after: str | None
    error_type: str | None


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    model = "llama-3.1-8b-instruct"
    config, port = stand_config(
        tmp_path_factory.mktemp("overload"),
        engines=[{"id": "shared", "model": model, "max_num_seqs": 4}],
        agents={agent: (model, ()) for agent in TOKENS},
        admission={"queue_timeout_s": QUEUE_TIMEOUT_S},
        llm={"max_retries": 0},
        time_scale=TIME_SCALE,
    )
    with Appliance(config, port) as running:
        yield running


def schedule(seed: int = 7) -> list[tuple[float, str]]:
    """(send time, agent) for Poisson-arriving turns at OVERLOAD x capacity."""
    rng = random.Random(seed)
    rate = OVERLOAD * CAPACITY_TURNS_PER_S
    at, out = 0.0, []
    while at < DURATION_S:
        out += [(at, "guardrail"), (at + 0.01, "kai"), (at + 0.02, "guardrail")]
        if rng.random() < 0.5:
            out.append((at + 0.03, rng.choice(("genetic", "wellness"))))
        at += rng.expovariate(rate)
    return out


async def drive(base_url: str, plan: list[tuple[float, str]]) -> list[Outcome]:
    loop = asyncio.get_running_loop()
    limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx2.AsyncClient(timeout=60.0, limits=limits, trust_env=False) as client:
        start = loop.time()

        async def one(at: float, agent: str) -> Outcome:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            sent = loop.time()
            response = await client.post(
                f"{base_url}/v1/chat/completions",
                json={
                    "model": agent,
                    "messages": [{"role": "user", "content": "a synthetic check-in"}],
                    "max_tokens": TOKENS[agent],
                    "ignore_eos": True,
                },
            )
            error = response.json().get("error") if response.status_code != 200 else None
            return Outcome(
                agent,
                response.status_code,
                loop.time() - sent,
                response.headers.get("retry-after"),
                error["type"] if error else None,
            )

        return await asyncio.gather(*(one(at, agent) for at, agent in plan))


@pytest.fixture(scope="module")
def outcomes(appliance: Appliance) -> list[Outcome]:
    return asyncio.run(drive(appliance.base_url, schedule()))


def by_agent(outcomes: list[Outcome], *agents: str) -> list[Outcome]:
    return [o for o in outcomes if o.agent in agents]


def shed_share(outcomes: list[Outcome]) -> float:
    return sum(o.status == 503 for o in outcomes) / len(outcomes)


def test_every_answer_is_served_or_shed_nothing_else(outcomes: list[Outcome]) -> None:
    assert {o.status for o in outcomes} <= {200, 503}
    assert sum(o.status == 503 for o in outcomes) > 0  # it really was overloaded


def test_the_guardrail_stays_inside_its_objective(outcomes: list[Outcome]) -> None:
    guardrail = by_agent(outcomes, "guardrail")
    served = [o.seconds for o in guardrail if o.status == 200]
    assert len(served) >= 0.98 * len(guardrail)
    assert percentile(served, 95) <= OBJECTIVE_S["guardrail"]


def test_lower_classes_are_shed_first(outcomes: list[Outcome]) -> None:
    guardrail = shed_share(by_agent(outcomes, "guardrail"))
    kai = shed_share(by_agent(outcomes, "kai"))
    analysis = shed_share(by_agent(outcomes, "genetic", "wellness"))
    assert analysis > kai >= guardrail
    assert analysis >= 0.5


def test_the_kai_answers_that_are_admitted_are_mostly_in_time(outcomes: list[Outcome]) -> None:
    # Waiters give up once they could no longer make it, and a standing queue serves the newest:
    # admitted answers are not the ones that waited longest.
    served = [o.seconds for o in by_agent(outcomes, "kai") if o.status == 200]
    assert served and percentile(served, 50) <= OBJECTIVE_S["kai"] / 2


def test_shed_answers_carry_retry_after_and_an_openai_error(outcomes: list[Outcome]) -> None:
    shed = [o for o in outcomes if o.status == 503]
    assert shed and all(o.retry_after == "2" for o in shed)
    assert {o.error_type for o in shed} == {"overloaded_error"}


def test_no_request_waits_past_its_deadline(outcomes: list[Outcome]) -> None:
    # A queued request is shed at its deadline at the latest: the queue timeout for the guardrail,
    # min(queue timeout, its class's objective) for the others; an admitted one then runs for its
    # answer's length (1.3 s at most here). The client's clock also counts what the deadline does
    # not: its own loop juggling 139 requests, and Kai's crisis checks before queueing and after
    # being shed, all CPU work on a machine the load saturates; 2.5 s of slack covers that on a
    # busy 2-core host. The deadlines themselves are exact in tests/unit/load/test_admission.py.
    for o in outcomes:
        objective = OBJECTIVE_S[o.agent] if o.agent != "genetic" else 4.0  # the analysis class
        deadline = QUEUE_TIMEOUT_S if o.agent == "guardrail" else min(QUEUE_TIMEOUT_S, objective)
        limit = deadline + (0.0 if o.status == 503 else 1.3) + 2.5
        assert o.seconds <= limit, o


def test_metrics_show_the_shed_and_admitted_counts(appliance: Appliance, outcomes: list) -> None:
    text = appliance.get("/metrics").text
    shed_lines = [line for line in text.splitlines() if line.startswith("appliance_shed_total{")]
    assert any('class="analysis"' in line for line in shed_lines)
    load = appliance.get("/admin/load").json()["gates"]["shared"]
    assert load["in_flight"] == 0 and sum(load["waiting"].values()) == 0
    # The guardrail's reserve: the configured quarter of 4 slots, grown with its traffic (at most
    # all but one slot).
    assert 1 <= load["guardrail_reserve"] <= 3
    assert json.dumps(load["shed"])  # by class and reason
