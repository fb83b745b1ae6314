"""What a load balancer hears from one appliance: readiness, and the agent-check's line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.core import Appliance, assemble
from appliance.engines.base import Endpoint
from appliance.gateway.breaker import BreakerState
from appliance.gateway.liveness import Liveness
from appliance.load.saturation import Signal
from appliance.loadbalancer.agent_check import AgentCheckServer, agent_reply
from appliance.loadbalancer.readiness import readiness, saturation

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"
UP = Liveness(ok=True, latency_ms=1.0, checked_at=1.0)


@pytest.fixture
async def services() -> Appliance:
    config = load_config(SHIPPED, env={})
    endpoints = [
        Endpoint(e.id, f"http://127.0.0.1:9/{e.id}/v1", "key", e.names, False)
        for e in config.engines
    ]
    built = assemble(config, endpoints)
    built.ready.set()
    assert built.load.admission is not None
    for engine in built.gateway.clients:
        built.liveness.results[engine] = UP
        built.load.admission.update(engine, Signal(known=True))  # engines' metrics read: idle
    return built


async def test_ready_and_weighted_when_every_agent_has_an_engine(services: Appliance) -> None:
    assert readiness(services).ready
    assert saturation(services) == 0.0
    assert agent_reply(services) == b"up ready 100%\n"


async def test_starting_is_not_ready(services: Appliance) -> None:
    services.ready.clear()
    assert readiness(services).reason == "starting"
    assert agent_reply(services) == b"down\n"


async def test_an_agent_without_any_engine_in_its_chain_is_not_ready(services: Appliance) -> None:
    # The guardrail's chain on the sim profile: llama-8b, then qwen-32b.
    for engine in ("llama-8b", "qwen-32b"):
        services.liveness.results[engine] = Liveness(ok=False, latency_ms=None, checked_at=1.0)
    state = readiness(services)
    assert not state.ready and state.reason == "no engine up for agent guardrail"
    assert agent_reply(services) == b"down\n"


async def test_a_fallback_engine_keeps_an_agent_ready(services: Appliance) -> None:
    breaker = services.gateway.breakers["llama-8b"]
    for _ in range(breaker.threshold):
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert readiness(services).ready  # the guardrail falls back to qwen-32b


async def test_draining_says_drain(services: Appliance) -> None:
    services.draining = True
    assert readiness(services).reason == "draining"
    assert agent_reply(services) == b"drain\n"


async def test_load_lowers_the_weight(services: Appliance) -> None:
    assert services.load.admission is not None
    gate = services.load.admission.gates["llama-70b"]
    gate.in_flight = gate.capacity  # one of three engines full
    assert agent_reply(services) == b"up ready 67%\n"
    services.load.admission.update("llama-8b", Signal(known=True, kv=0.5))  # half its KV cache
    assert agent_reply(services) == b"up ready 50%\n"


async def test_unknown_engine_metrics_count_as_half_busy(services: Appliance) -> None:
    assert services.load.admission is not None
    for engine in services.gateway.clients:
        services.load.admission.update(engine, Signal(known=False))
    assert agent_reply(services) == b"up ready 50%\n"


async def test_the_server_answers_one_line_and_closes(services: Appliance) -> None:
    server = AgentCheckServer(services, "127.0.0.1", 0)
    await server.start()
    assert server._server is not None
    port = server._server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), timeout=10) == b"up ready 100%\n"
        writer.close()
    finally:
        await server.stop()
