"""The gateway with the real admission: reroutes it asks for, and breakers it must not leave stuck."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.config import load_config
from appliance.config.schema import Config
from appliance.engines.base import Endpoint
from appliance.errors import EngineUnavailable, Overloaded
from appliance.gateway.breaker import BreakerState
from appliance.gateway.client import EngineClient, engine_clients
from appliance.gateway.gateway import Gateway
from appliance.gateway.hooks import ADMIT, Decision, Permit
from appliance.load.admission import AdmissionController
from appliance.load.priority import Priority
from appliance.load.saturation import Signal
from benchmarks.cluster import closed_port

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"


def config() -> Config:
    loaded = load_config(SHIPPED, env={})
    return msgspec.structs.replace(
        loaded,
        llm=msgspec.structs.replace(loaded.llm, max_retries=0, circuit_breaker_threshold=1),
    )


def clients(cfg: Config) -> dict[str, EngineClient]:
    endpoints = [
        Endpoint(e.id, f"http://127.0.0.1:{closed_port()}/v1", "key", e.names, True)
        for e in cfg.engines
    ]
    return engine_clients(endpoints, cfg.llm)


def gateway(cfg: Config, clock: list[float], **parts: Any) -> Gateway:
    return Gateway(cfg, clients(cfg), clock=lambda: clock[0], **parts)


class Shedding:
    def assess(self, engine_id: str, priority: Priority, *, has_fallback: bool) -> Decision:
        return ADMIT

    async def acquire(self, engine_id: str, priority: Priority) -> Permit:
        raise Overloaded("full", retry_after=2)


def body(model: str) -> bytes:
    return b'{"model": "%s", "messages": [{"role": "user", "content": "hi"}]}' % model.encode()


async def test_a_shed_half_open_trial_does_not_leave_the_breaker_stuck() -> None:
    cfg, clock = config(), [0.0]
    gw = gateway(cfg, clock, admission=Shedding())
    breaker = gw.breakers["llama-70b"]
    breaker.record_failure()  # threshold 1: open
    clock[0] = cfg.llm.circuit_breaker_timeout + 1
    with pytest.raises(Overloaded):
        await gw.dispatch(gw.route("llama-3.1-70b-instruct"), body, priority=Priority.INTERACTIVE)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the next request may be the trial
    await gw.aclose()


async def test_open_breaker_reroutes_before_taking_a_slot_and_is_counted() -> None:
    cfg, clock = config(), [0.0]
    admission = AdmissionController(cfg, [e.id for e in cfg.engines])
    gw = gateway(cfg, clock, admission=admission)
    gw.breakers["llama-70b"].record_failure()
    with pytest.raises(EngineUnavailable) as caught:
        await gw.dispatch(gw.route("kai"), body, priority=Priority.INTERACTIVE)
    # Kai's primary was skipped for its breaker; the fallback was tried (and refused the connection).
    assert "llama-3.1-70b-instruct: circuit breaker open" in caught.value.message
    assert "llama-3.1-8b-instruct: engine unreachable" in caught.value.message
    assert admission.gates["llama-70b"].rerouted == {(Priority.INTERACTIVE, "breaker"): 1}
    assert admission.gates["llama-70b"].admitted[Priority.INTERACTIVE] == 0
    assert admission.gates["llama-8b"].admitted[Priority.INTERACTIVE] == 1
    assert admission.gates["llama-8b"].in_flight == 0  # the failed call gave its slot back
    await gw.aclose()


async def test_a_half_open_breaker_is_not_rerouted_around_so_its_trial_can_run() -> None:
    cfg, clock = config(), [0.0]
    admission = AdmissionController(cfg, [e.id for e in cfg.engines])
    gw = gateway(cfg, clock, admission=admission)
    gw.breakers["llama-70b"].record_failure()  # threshold 1: open
    clock[0] = cfg.llm.circuit_breaker_timeout + 1  # half-open: the next call is the trial
    with pytest.raises(EngineUnavailable) as caught:
        await gw.dispatch(gw.route("kai"), body, priority=Priority.INTERACTIVE)
    assert "llama-3.1-70b-instruct: engine unreachable" in caught.value.message
    assert admission.gates["llama-70b"].rerouted == {}
    assert admission.gates["llama-70b"].admitted[Priority.INTERACTIVE] == 1
    await gw.aclose()


async def test_saturated_primary_reroutes_and_the_last_model_is_never_rerouted() -> None:
    cfg, clock = config(), [0.0]
    admission = AdmissionController(cfg, [e.id for e in cfg.engines])
    gw = gateway(cfg, clock, admission=admission)
    for gate in admission.gates.values():
        gate.update(Signal(known=True, engine=1.5))
    with pytest.raises(EngineUnavailable) as caught:
        await gw.dispatch(gw.route("kai"), body, priority=Priority.INTERACTIVE)
    assert "llama-3.1-70b-instruct: engine saturated" in caught.value.message
    # The fallback is saturated too, but it is the last model: Kai queues (then is served) there.
    assert admission.gates["llama-8b"].admitted[Priority.INTERACTIVE] == 1
    await gw.aclose()


async def test_an_engine_known_down_is_skipped_without_waiting_or_retrying() -> None:
    from appliance.gateway.liveness import LivenessProber

    loaded = load_config(SHIPPED, env={})
    # Retries with long backoff: only skipping the dead engines makes this fast.
    cfg = msgspec.structs.replace(
        loaded, llm=msgspec.structs.replace(loaded.llm, max_retries=5, retry_delay=30.0)
    )
    engines = clients(cfg)
    admission = AdmissionController(cfg, list(engines))
    prober = LivenessProber(engines)
    gw = Gateway(cfg, engines, admission=admission, known_down=prober.known_down)
    assert prober.known_down("llama-8b") is None  # not probed yet: not known down
    await prober.probe_all()
    with pytest.raises(EngineUnavailable) as caught:
        await asyncio.wait_for(
            gw.dispatch(gw.route("guardrail"), body, priority=Priority.GUARDRAIL), timeout=10
        )
    assert "llama-3.1-8b-instruct: engine down (health probe: ConnectError)" in caught.value.message
    assert "qwen-2.5-32b-instruct: engine down" in caught.value.message
    assert all(sum(g.admitted) == 0 for g in admission.gates.values())
    await gw.aclose()


async def test_an_engine_seen_healthy_by_the_supervisor_is_no_longer_known_down() -> None:
    from appliance.gateway.liveness import LivenessProber

    gw = gateway(load_config(SHIPPED, env={}), [0.0])
    prober = LivenessProber(gw.clients)
    await prober.probe_all()  # nothing listens: every engine is known down
    assert prober.known_down("llama-8b") == "engine down (health probe: ConnectError)"
    prober.saw_healthy("llama-8b")  # a restart finished: the supervisor's health check passed
    assert prober.known_down("llama-8b") is None
    assert prober.known_down("llama-70b") is not None  # the others are still down
    prober.saw_healthy("no-such-engine")  # an engine it does not probe is ignored
    assert "no-such-engine" not in prober.results
    await gw.aclose()
