"""Admission per engine: slots, the guardrail's reserve, the priority queue, deadlines, shedding."""

from __future__ import annotations

import asyncio
import dataclasses
import math
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.config import load_config
from appliance.config.schema import Config
from appliance.errors import Overloaded
from appliance.load.admission import (
    AdmissionController,
    EngineGate,
    GateSettings,
    Permit,
    gate_settings,
    guardrail_engines,
    guardrail_slots,
)
from appliance.load.priority import Priority
from appliance.load.saturation import Signal

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"
G, KAI, A, B = Priority.GUARDRAIL, Priority.INTERACTIVE, Priority.ANALYSIS, Priority.BENCHMARK


def settings(**changes: Any) -> GateSettings:
    base = GateSettings(
        capacity=4,
        reserve=1,
        queue_size=8,
        deadlines_s=(5.0, 5.0, 5.0, 5.0),
        shed_at=0.95,
        retry_after_s=2.0,
        conservative=False,
    )
    return dataclasses.replace(base, **changes)


def known(**terms: float) -> Signal:
    return Signal(known=True, **terms)


async def fill(gate: EngineGate, priority: Priority, n: int) -> list[Permit]:
    return [await gate.acquire(priority) for _ in range(n)]


def config(**admission: Any) -> Config:
    loaded = load_config(SHIPPED, env={})
    return msgspec.structs.replace(
        loaded, admission=msgspec.structs.replace(loaded.admission, **admission)
    )


# -- slots and the guardrail's reserve ---------------------------------------------------------


async def test_free_slot_admits_without_waiting_and_release_frees_it() -> None:
    gate = EngineGate("e", settings())
    permit = await gate.acquire(KAI)
    assert gate.in_flight == 1 and gate.admitted[KAI] == 1
    permit.release()
    assert gate.in_flight == 0


async def test_reserved_slots_are_the_guardrails_alone() -> None:
    gate = EngineGate("e", settings(capacity=4, reserve=1))
    await fill(gate, KAI, 3)  # the other classes may hold capacity - reserve
    waiting = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    assert gate.waiting_by_class[KAI] == 1 and not waiting.done()
    # The guardrail does not queue behind them: the reserved slot is free.
    await asyncio.wait_for(gate.acquire(G), 0.5)
    assert gate.in_flight == 4
    waiting.cancel()


async def test_queue_serves_the_most_important_class_first() -> None:
    gate = EngineGate("e", settings(capacity=2, reserve=0, shed_at=2.0))  # queue, never shed
    held = await fill(gate, B, 2)
    order: list[Priority] = []

    async def wait(priority: Priority) -> None:
        permit = await gate.acquire(priority)
        order.append(priority)
        permit.release()

    tasks = [asyncio.create_task(wait(p)) for p in (B, A, KAI, A, G)]
    await asyncio.sleep(0)
    assert gate.waiting == 5
    held[0].release()
    await asyncio.gather(*tasks)
    assert order == [G, KAI, A, A, B]
    held[1].release()
    assert gate.in_flight == 0 and gate.waiting == 0


async def test_a_freed_slot_goes_to_the_waiter_not_to_the_next_caller() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0))
    held = await gate.acquire(KAI)
    first = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    held.release()
    assert gate.in_flight == 1 and gate.waiting == 0
    late = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    assert not late.done()
    (await first).release()
    (await late).release()
    assert gate.in_flight == 0


async def test_a_standing_queue_serves_the_newest_waiter_first() -> None:
    # 2 s deadlines: the old waiter must not reach its own while the test runs, on any host.
    gate = EngineGate("e", settings(capacity=1, reserve=0, deadlines_s=(2.0,) * 4))
    held = await gate.acquire(KAI)
    old = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(1.1)  # past half its deadline: the queue is standing
    new = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    held.release()
    (await new).release()  # the newcomer can still meet its objective; it goes first
    assert not old.done() or old.exception() is not None
    (await old).release()  # and the old one gets the slot after it, still within its deadline
    assert gate.in_flight == 0


# -- deadlines and shedding --------------------------------------------------------------------


async def test_a_waiter_is_shed_at_its_deadline_with_retry_after() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0, deadlines_s=(0.05, 0.05, 0.05, 0.05)))
    await gate.acquire(KAI)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded) as caught:
        await gate.acquire(G)
    assert 0.04 <= loop.time() - started < 1.0
    assert caught.value.retry_after == 2.0
    assert gate.waiting == 0 and gate.shed[(G, "deadline")] == 1


async def test_lower_classes_are_shed_at_once_when_saturated_higher_ones_wait() -> None:
    gate = EngineGate("e", settings(capacity=2, reserve=0))
    await fill(gate, KAI, 2)  # score 1.0 >= shed_at
    for priority in (A, B):
        with pytest.raises(Overloaded):
            await gate.acquire(priority)
        assert gate.shed[(priority, "saturated")] == 1
    kai = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    assert not kai.done() and gate.waiting_by_class[KAI] == 1
    kai.cancel()


async def test_analysis_is_shed_on_a_saturated_engine_even_with_own_slots_free() -> None:
    gate = EngineGate("e", settings(capacity=8, reserve=0))
    gate.update(known(engine=1.2))  # the engine's own queue: work the appliance did not send
    with pytest.raises(Overloaded):
        await gate.acquire(A)
    (await gate.acquire(KAI)).release()  # the interactive class is still let through


async def test_a_full_queue_displaces_the_least_important_newest_waiter() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0, queue_size=2, shed_at=2.0))
    await gate.acquire(KAI)
    older = asyncio.create_task(gate.acquire(B))
    newer = asyncio.create_task(gate.acquire(B))
    await asyncio.sleep(0)
    guard = asyncio.create_task(gate.acquire(G))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded):
        await newer
    assert not older.done() and not guard.done()
    assert gate.shed[(B, "displaced")] == 1
    # Nobody below a benchmark request: it is refused itself.
    with pytest.raises(Overloaded):
        await gate.acquire(B)
    assert gate.shed[(B, "queue full")] == 1
    older.cancel()
    guard.cancel()


async def test_without_a_queue_a_request_that_cannot_start_is_shed_at_once() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0, queue_size=0, shed_at=2.0))
    await gate.acquire(G)
    with pytest.raises(Overloaded):
        await gate.acquire(G)
    assert gate.shed[(G, "queue full")] == 1


async def test_a_cancelled_waiter_leaves_the_queue_and_a_granted_one_returns_its_slot() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0))
    held = await gate.acquire(KAI)
    waiter = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert gate.waiting == 0
    granted = asyncio.create_task(gate.acquire(KAI))
    await asyncio.sleep(0)
    held.release()  # grants the slot to `granted`...
    granted.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(granted, return_exceptions=True)
    assert gate.in_flight == 0 and gate.waiting == 0


async def test_many_waiters_timing_out_do_not_pile_up_in_the_queue() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0, queue_size=500, shed_at=2.0,
                                    deadlines_s=(0.001,) * 4))  # fmt: skip
    await gate.acquire(G)
    for _ in range(300):
        with pytest.raises(Overloaded):
            await gate.acquire(B)
    assert gate.waiting == 0
    assert not any(gate._queues)


# -- the score ---------------------------------------------------------------------------------


async def test_score_takes_the_largest_term_and_queued_requests_mean_full() -> None:
    gate = EngineGate("e", settings(capacity=4, reserve=0))
    gate.update(known(engine=0.3, kv=0.6, latency=0.2))
    assert gate.score(KAI) == pytest.approx(0.6)
    await fill(gate, KAI, 3)
    assert gate.score(KAI) == pytest.approx(0.75)
    gate.update(known(latency=1.4))
    assert gate.score(KAI) == pytest.approx(1.4)
    gate.update(known())
    await gate.acquire(KAI)
    waiter = asyncio.create_task(gate.acquire(A))
    gate.update(known(engine=0.0))
    await asyncio.sleep(0)
    assert gate.score(G) == pytest.approx(1.0)  # full
    assert gate.score(B) == 1.0  # analysis waits: benchmark is behind it
    waiter.cancel()


def test_own_term_counts_the_slots_of_the_class() -> None:
    gate = EngineGate("e", settings(capacity=4, reserve=2))
    gate.in_flight = 2
    assert gate.score(G) == pytest.approx(0.5)
    assert gate.score(KAI) == pytest.approx(1.0)


def test_unknown_metrics_conservative_assume_the_engine_half_busy() -> None:
    gate = EngineGate("e", settings(capacity=10, reserve=0, conservative=True))
    gate.update(Signal(known=False))
    assert gate.score(KAI) == pytest.approx(0.5)
    gate.in_flight = 7
    assert gate.score(KAI) == pytest.approx(0.85)
    gate.update(known())
    assert gate.score(KAI) == pytest.approx(0.7)


def test_unknown_metrics_admit_trust_own_counters() -> None:
    gate = EngineGate("e", settings(capacity=10, reserve=0, conservative=False))
    gate.update(Signal(known=False, latency=0.3))
    assert gate.score(KAI) == pytest.approx(0.3)
    gate.in_flight = 7
    assert gate.score(KAI) == pytest.approx(0.7)


# -- the controller: reroute decisions ---------------------------------------------------------


def controller(**admission: Any):
    cfg = config(**admission)
    ids = [engine.id for engine in cfg.engines]
    return AdmissionController(cfg, ids), cfg


async def test_saturated_primary_reroutes_when_a_fallback_exists() -> None:
    admission, _ = controller()
    gate = admission.gates["llama-70b"]
    gate.update(known(engine=0.9))
    assert admission.assess("llama-70b", KAI, has_fallback=True).reroute
    assert not admission.assess("llama-70b", KAI, has_fallback=False).reroute
    gate.update(known(engine=0.5))
    assert not admission.assess("llama-70b", KAI, has_fallback=True).reroute
    assert gate.rerouted == {(KAI, "saturated"): 1}


def test_the_guardrail_is_rerouted_only_when_it_could_not_start_at_once() -> None:
    admission, _ = controller()
    gate = admission.gates["llama-8b"]  # the guardrail's engine: 64 slots, 16 of them reserved
    gate.update(known(engine=0.99, latency=1.5))  # busy and slow, but a slot is free
    gate.in_flight = gate.capacity - 1
    assert not admission.assess("llama-8b", G, has_fallback=True).reroute
    assert admission.assess("llama-8b", KAI, has_fallback=True).reroute
    gate.in_flight = gate.capacity
    assert admission.assess("llama-8b", G, has_fallback=True).reroute


@pytest.mark.parametrize(("rule", "share"), [("conservative", 0.7), ("admit", 0.85)])
def test_reroute_threshold_under_unknown_metrics_follows_the_rule(rule: str, share: float) -> None:
    admission, _ = controller(unknown_metrics=rule)
    gate = admission.gates["llama-70b"]
    gate.update(Signal(known=False))
    rerouted = []
    for n in range(gate.capacity + 1):
        gate.in_flight = n
        if admission.assess("llama-70b", KAI, has_fallback=True).reroute:
            rerouted.append(n)
    assert min(rerouted) == math.ceil(share * gate.capacity)


# -- settings from the config ------------------------------------------------------------------


def test_only_the_guardrails_engines_keep_a_reserve() -> None:
    cfg = config()
    guarded = guardrail_engines(cfg)
    assert guarded == {"llama-8b", "qwen-32b"}  # the sim profile: 8B, then 32B as fallback
    engines = {e.id: e for e in cfg.engines}
    assert gate_settings(cfg, engines["llama-70b"], guarded=False).reserve == 0
    small = gate_settings(cfg, engines["llama-8b"], guarded=True)
    assert small.capacity == engines["llama-8b"].max_num_seqs
    assert small.reserve == small.capacity // 4


def test_deadlines_are_the_queue_timeout_or_the_class_objective_time_scaled() -> None:
    cfg = config(queue_timeout_s=5.0)
    engine = msgspec.structs.replace(
        cfg.engines[0], sim=msgspec.structs.replace(cfg.engines[0].sim, time_scale=0.1)
    )
    deadlines = gate_settings(cfg, engine, guarded=True).deadlines_s
    # The guardrail waits up to the queue timeout (a late check beats none); Kai 8 s, the
    # analyses max(5, 8) s, time-scaled by 0.1; the benchmark class the queue timeout.
    assert deadlines == pytest.approx((5.0, 0.8, 0.8, 5.0))
    assert gate_settings(cfg, cfg.engines[0], guarded=True).deadlines_s[KAI] == 5.0


def test_max_concurrency_overrides_max_num_seqs() -> None:
    cfg = config(max_concurrency=3)
    assert gate_settings(cfg, cfg.engines[0], guarded=False).capacity == 3


def test_deadlines_leave_time_for_the_answer_but_never_drop_below_a_quarter() -> None:
    gate = EngineGate("e", settings(deadlines_s=(5.0, 5.0, 4.0, 5.0)))
    gate.plan_deadlines([0.5, 4.5, 1.0, None])
    # The guardrail keeps its bound; Kai's 4.5 s answers leave a quarter of 5 s.
    assert gate.deadlines == pytest.approx([5.0, 1.25, 3.0, 5.0])
    gate.plan_deadlines([None, None, None, None])
    assert gate.deadlines == pytest.approx([5.0, 5.0, 4.0, 5.0])


async def test_a_waiter_is_shed_when_it_could_no_longer_meet_its_objective() -> None:
    gate = EngineGate("e", settings(capacity=1, reserve=0, deadlines_s=(0.4,) * 4))
    gate.plan_deadlines([None, 0.3, None, None])  # Kai's answers take 0.3 s of its 0.4 s
    assert gate.deadlines[KAI] == pytest.approx(0.1)
    await gate.acquire(G)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Overloaded):
        await gate.acquire(KAI)
    # Shed at the 0.1 s deadline, not the 0.4 s bound; the upper bound only rules out a hang, so
    # that a pause of the host cannot fail it.
    assert 0.09 <= loop.time() - started < 2.0


def test_guardrail_slots_cover_mean_concurrency_and_bursts() -> None:
    assert guardrail_slots(0.0, 0.5) == 0
    assert guardrail_slots(4.0, 1.0) == 8  # 4 on average, + 2 x sqrt(4)
    assert guardrail_slots(10.0, 0.5) == math.ceil(5 + 2 * math.sqrt(5))


def test_the_reserve_grows_within_bounds_and_narrows_the_other_classes() -> None:
    gate = EngineGate("e", settings(capacity=12, reserve=3))
    gate.set_reserve(7)
    assert gate.reserve == 7 and gate.ceilings == (12, 5, 5, 5)
    gate.set_reserve(1)  # never below the configured share
    assert gate.reserve == 3
    gate.set_reserve(50)  # never all of it
    assert gate.reserve == 11
    outside = EngineGate("e", settings(capacity=12, reserve=0))
    outside.set_reserve(7)  # an engine outside the guardrail's chain keeps none
    assert outside.reserve == 0 and outside.ceilings == (12, 12, 12, 12)


async def test_live_in_flight_leaves_benchmark_requests_out() -> None:
    admission, _ = controller()
    first = await admission.acquire("llama-70b", KAI)
    await admission.acquire("llama-8b", G)
    await admission.acquire("llama-70b", B)
    assert admission.live_in_flight() == 2
    first.release()
    assert admission.live_in_flight() == 1
