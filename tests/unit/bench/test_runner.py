"""Load shapes: closed loop keeps N in flight; Poisson arrivals are seeded and rescaled."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from appliance.bench.records import Phase
from appliance.bench.runner import Progress, Runner, arrival_offsets
from appliance.bench.workloads import Workload
from tests.unit.bench.fakes import FakeClient, targets


def runner(client: FakeClient, *agents: str, **kw: object) -> Runner:
    return Runner(client, targets(*(agents or ("kai",))), Workload(0), **kw)  # type: ignore[arg-type]


def phase(concurrency: int = 4, n: int = 20, scope: str = "kai", index: int = 0) -> Phase:
    return Phase(
        index=index, scope=scope, mode="concurrency", concurrency=concurrency, num_requests=n
    )


async def test_closed_loop_keeps_exactly_n_in_flight_and_sends_each_request_once() -> None:
    client = FakeClient()
    out = await runner(client).run_phase(phase(concurrency=4, n=20))
    assert client.max_in_flight == 4
    assert len(out.samples) == 20
    assert sorted(seq for _, seq in client.sent) == list(range(20))


async def test_concurrency_above_the_request_count_sends_them_all_at_once() -> None:
    client = FakeClient()
    await runner(client).run_phase(phase(concurrency=64, n=5))
    assert client.max_in_flight == 5


async def test_later_phases_get_fresh_requests_and_the_mix_uses_every_target() -> None:
    client = FakeClient()
    r = runner(client, "kai", "guardrail", "genetic", "wellness")
    first = r.requests_for(phase(n=3))
    second = r.requests_for(phase(n=3, index=1))
    assert first != second
    out = await r.run_phase(phase(concurrency=2, n=30, scope="mix", index=2))
    assert {s.agent for s in out.samples} >= {"kai", "guardrail"}


async def test_a_missing_target_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no target for agent"):
        await runner(FakeClient(), "kai").run_phase(phase(scope="guardrail"))


async def test_gate_progress_and_sample_callbacks_see_every_request() -> None:
    gates: list[int] = []
    progress: list[Progress] = []
    stored: list[int] = []
    client = FakeClient()

    async def gate() -> None:
        gates.append(client.in_flight)

    async def on_sample(sample: object) -> None:
        stored.append(1)

    r = runner(client, gate=gate, on_progress=progress.append, on_sample=on_sample)
    await r.run_phase(phase(concurrency=2, n=6))
    assert len(gates) == 6 and len(stored) == 6
    assert [p.done for p in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[-1].total == 6 and progress[-1].failed == 0


async def test_an_error_in_a_worker_comes_out_as_itself() -> None:
    async def gate() -> None:
        raise RuntimeError("traffic too high")

    with pytest.raises(RuntimeError, match="traffic too high"):
        await runner(FakeClient(), gate=gate).run_phase(phase())


def test_arrival_offsets_are_seeded_and_end_at_n_over_rate() -> None:
    a = arrival_offsets(50, 5.0, seed=3)
    assert a == arrival_offsets(50, 5.0, seed=3)
    assert a != arrival_offsets(50, 5.0, seed=4)
    assert a[-1] == pytest.approx(50 / 5.0)
    assert all(x < y for x, y in itertools.pairwise(a))
    assert arrival_offsets(0, 5.0, seed=1) == []


async def test_rate_mode_sends_on_schedule_without_waiting_for_answers() -> None:
    client = FakeClient(pause_s=0.05)
    r = runner(client)
    rate_phase = Phase(index=0, scope="kai", mode="rate", rate=400.0, num_requests=20)
    started = asyncio.get_running_loop().time()
    out = await r.run_phase(rate_phase)
    elapsed = asyncio.get_running_loop().time() - started
    assert len(out.samples) == 20
    assert client.max_in_flight > 1  # open loop: arrivals do not wait for answers
    assert elapsed >= 20 / 400.0


async def test_rate_mode_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="positive request rate"):
        await runner(FakeClient()).run_phase(
            Phase(index=0, scope="kai", mode="rate", rate=None, num_requests=2)
        )
