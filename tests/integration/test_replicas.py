"""Replicas of one model behind one appliance, and what a load balancer sees of it: real
`appliance serve`, real simulator engines, the real openai client."""

from __future__ import annotations

import re
import signal
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.support.running import Appliance, free_port, sim_config, wait_for

pytestmark = pytest.mark.integration

GUARD = "llama-3.1-8b-instruct"
REPLICA = """
[[profiles.sim.engines]]
id = "llama-8b-b"
kind = "sim"
model = "llama-3.1-8b-instruct"
port = {port}
max_model_len = 8192
max_num_seqs = 64
sim.time_scale = 0.1
{settings}
"""
DRAIN_S = 4.0


def replica_config(directory: Path, *, settings: str = "", **replace: str) -> tuple[Path, int]:
    # Time scale 0.1: the Guardrail's objective (0.2 s) stays well above the answer time on a
    # loaded machine, so latency does not count the replicas as saturated.
    return sim_config(
        directory,
        time_scale=0.1,
        extra=REPLICA.format(port=free_port(), settings=settings),
        replace={"max_retries = 3": "max_retries = 0", **replace},
    )


def served(appliance: Appliance) -> dict[str, float]:
    """Per-engine answered requests, from /metrics."""
    text = appliance.get("/metrics").text
    pattern = r'^appliance_engine_requests_total\{engine="([^"]+)",model="([^"]+)"\} (\S+)$'
    return {m[1]: float(m[3]) for m in re.finditer(pattern, text, re.M)}


def agent_check(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        chunks = []
        while chunk := sock.recv(256):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture(scope="module")
def agent_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, agent_port: int) -> Iterator[Appliance]:
    config, port = replica_config(
        tmp_path_factory.mktemp("replicas"),
        **{
            "drain_s = 0.0": f"drain_s = {DRAIN_S}",
            "lb_agent_port = 0": f"lb_agent_port = {agent_port}",
        },
    )
    with Appliance(config, port) as running:
        yield running


@pytest.fixture
def client(appliance: Appliance) -> openai.OpenAI:
    return openai.OpenAI(base_url=appliance.base_url + "/v1", api_key="test", max_retries=0)


def ask(client: openai.OpenAI, user: str | None = None) -> str:
    extra = {"user": user} if user else {}
    reply = client.chat.completions.create(
        model=GUARD, messages=[{"role": "user", "content": "hello"}], max_tokens=4, **extra
    )
    return reply.model


def test_two_replicas_each_take_a_fair_share_of_100_requests(
    appliance: Appliance, client: openai.OpenAI
) -> None:
    before = served(appliance)
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: ask(client), range(100)))
    assert models == [GUARD] * 100
    after = served(appliance)
    taken = {e: after[e] - before.get(e, 0.0) for e in ("llama-8b", "llama-8b-b")}
    assert sum(taken.values()) == 100
    assert min(taken.values()) >= 35, taken


def test_a_conversation_keeps_to_one_replica(appliance: Appliance, client: openai.OpenAI) -> None:
    before = served(appliance)
    for _ in range(10):
        ask(client, user="conversation-41")
    after = served(appliance)
    taken = sorted(after[e] - before.get(e, 0.0) for e in ("llama-8b", "llama-8b-b"))
    assert taken == [0, 10]


def test_health_shows_each_replica_and_the_balancer_endpoints(
    appliance: Appliance, client: openai.OpenAI, agent_port: int
) -> None:
    for _ in range(4):
        ask(client)  # one after another: the replicas take turns
    engines = appliance.engines()
    for engine in ("llama-8b", "llama-8b-b"):
        assert engines[engine]["models"] == [GUARD]
        assert engines[engine]["replicas"] == 2
        assert engines[engine]["requests"] > 0
    assert appliance.get("/health").json()["llm"]["models_available"] == 3  # replicas once
    assert appliance.get("/health/live").status_code == 200
    ready = appliance.get("/health/ready")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert re.fullmatch(rb"up ready \d{1,3}%\n", agent_check(agent_port))


def test_models_lists_a_replicated_model_once(client: openai.OpenAI) -> None:
    listed = [m for m in client.models.list().data if m.id == GUARD]
    assert len(listed) == 1
    assert listed[0].model_extra is not None
    assert listed[0].model_extra["replicas"] == ["llama-8b", "llama-8b-b"]


def test_sigterm_turns_not_ready_and_keeps_serving_while_it_drains(
    appliance: Appliance, client: openai.OpenAI, agent_port: int
) -> None:
    assert appliance.proc is not None
    appliance.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: appliance.get("/health/ready").status_code == 503, timeout=DRAIN_S)
    assert appliance.get("/health/ready").json()["reason"] == "draining"
    assert agent_check(agent_port) == b"drain\n"
    assert ask(client) == GUARD  # new requests are still served while draining
    assert appliance.get("/health/live").status_code == 200
    appliance.proc.wait(timeout=DRAIN_S + 30)


def test_a_failing_replica_falls_back_to_the_other_replica_before_another_model(
    tmp_path: Path,
) -> None:
    config, port = replica_config(tmp_path, settings="sim.error_rate = 1.0")
    with Appliance(config, port) as appliance:
        client = openai.OpenAI(base_url=appliance.base_url + "/v1", api_key="t", max_retries=0)
        assert [ask(client) for _ in range(20)] == [GUARD] * 20
        counts = served(appliance)
        assert counts["llama-8b"] == 20 and counts["llama-8b-b"] == 0
        breaker = appliance.engines()["llama-8b-b"]["circuit_breaker"]
        assert breaker["state"] == "open"


def test_a_second_sigterm_ends_the_drain_at_once(tmp_path: Path) -> None:
    config, port = replica_config(tmp_path, **{"drain_s = 0.0": "drain_s = 120.0"})
    with Appliance(config, port) as appliance:
        assert appliance.proc is not None
        appliance.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: appliance.get("/health/ready").status_code == 503, timeout=30)
        appliance.proc.send_signal(signal.SIGTERM)
        appliance.proc.wait(timeout=60)  # well before the 120 s drain would end
