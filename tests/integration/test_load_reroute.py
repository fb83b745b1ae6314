"""Fallback models under load: a saturated primary, an open breaker, and engines nobody can see.

Engines (simulated, time scale 0.5): `big` (70B, 4 sequences) for Kai and Genetic with `small` (8B)
as their fallback; `flaky` (32B) answers every request with 500 and is Wellness's primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.load_stand import stand_config
from tests.support.running import Appliance

pytestmark = pytest.mark.integration

BIG, SMALL, FLAKY = "llama-3.1-70b-instruct", "llama-3.1-8b-instruct", "qwen-2.5-32b-instruct"


def routes_config(directory: Path, **admission: Any) -> tuple[Path, int]:
    return stand_config(
        directory,
        engines=[
            {"id": "big", "model": BIG, "max_num_seqs": 4},
            {"id": "small", "model": SMALL, "max_num_seqs": 16},
            {"id": "flaky", "model": FLAKY, "max_num_seqs": 8, "sim": {"error_rate": 1.0}},
        ],
        agents={
            "kai": (BIG, [SMALL]),
            "guardrail": (SMALL, []),
            "genetic": (BIG, [SMALL]),
            "wellness": (FLAKY, [SMALL]),
        },
        admission=admission,
        llm={"max_retries": 0, "circuit_breaker_threshold": 2, "circuit_breaker_timeout": 600.0},
        time_scale=0.5,
    )


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    config, port = routes_config(tmp_path_factory.mktemp("routes"))
    with Appliance(config, port) as running:
        yield running


@pytest.fixture(scope="module", params=["conservative", "admit"])
def blind(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """An appliance whose engine metrics are always too old to count."""
    config, port = routes_config(
        tmp_path_factory.mktemp("blind"), unknown_metrics=request.param, metrics_max_age_s=0.001
    )
    with Appliance(config, port) as running:
        yield request.param, running


def chat(agent: str, max_tokens: int = 4, **extra: Any) -> dict[str, Any]:
    return {
        "model": agent,
        "messages": [{"role": "user", "content": "a synthetic message"}],
        "max_tokens": max_tokens,
        **extra,
    }


async def gate(client: httpx2.AsyncClient, engine: str) -> dict[str, Any]:
    load = (await client.get("/admin/load")).json()
    return load["gates"][engine]


async def until(client: httpx2.AsyncClient, engine: str, check: Any, timeout: float = 20.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        view = await gate(client, engine)
        if check(view):
            return view
        assert loop.time() < deadline, view
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def held_streams(client: httpx2.AsyncClient, agent: str, n: int) -> AsyncIterator[None]:
    """`n` long streamed answers in flight until the block ends."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(n):
            response = await stack.enter_async_context(
                client.stream("POST", "/v1/chat/completions", json=chat(agent, 150, stream=True))
            )
            assert response.status_code == 200
            assert response.headers["x-appliance-model"] == BIG
        yield


async def served_by(client: httpx2.AsyncClient, agent: str) -> tuple[str, str]:
    response = await client.post("/v1/chat/completions", json=chat(agent))
    assert response.status_code == 200, response.text
    return response.headers["x-appliance-model"], response.headers["x-appliance-fallback"]


def client_for(appliance: Appliance) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(base_url=appliance.base_url, timeout=30.0, trust_env=False)


async def test_a_saturated_primary_sends_kai_to_its_fallback(appliance: Appliance) -> None:
    async with client_for(appliance) as client:
        await until(client, "big", lambda view: view["metrics_known"])
        async with held_streams(client, "kai", 3):
            await until(client, "big", lambda view: view["in_flight"] == 3)
            assert await served_by(client, "kai") == (BIG, "false")  # 3 of 4 busy: not yet
            async with held_streams(client, "kai", 1):
                await until(client, "big", lambda view: view["in_flight"] == 4)
                assert await served_by(client, "kai") == (SMALL, "true")
                assert await served_by(client, "genetic") == (SMALL, "true")
        # Back to the primary once the engine says it is free again (its /metrics, scraped).
        view = await until(
            client, "big", lambda v: v["in_flight"] == 0 and v["score"]["interactive"] < 0.85
        )
        assert view["rerouted"] == {"interactive": {"saturated": 1}, "analysis": {"saturated": 1}}
        assert await served_by(client, "kai") == (BIG, "false")  # free again: back to the primary
        metrics = (await client.get("/metrics")).text
        line = 'appliance_rerouted_total{class="interactive",engine="big",reason="saturated"} 1.0'
        assert line in metrics


async def test_an_open_breaker_reroutes_at_once_until_reset(appliance: Appliance) -> None:
    async with client_for(appliance) as client:
        # Two failures (threshold 2): each is answered by the fallback after the primary's 500.
        for _ in range(2):
            assert await served_by(client, "wellness") == (SMALL, "true")
        health = (await client.get("/health")).json()
        assert health["llm"]["circuit_breaker_state"] == "open"
        assert health["engines"]["flaky"]["circuit_breaker"]["state"] == "open"
        assert await served_by(client, "wellness") == (SMALL, "true")
        view = await gate(client, "flaky")
        assert view["rerouted"] == {"analysis": {"breaker": 1}}  # straight to the fallback
        assert view["admitted"]["analysis"] == 2  # only the two that failed reached the engine

        status = appliance_cli("breaker", "status", "--base-url", appliance.base_url + "/v1")
        assert status.returncode == 0
        assert any(line.split()[:2] == ["flaky", "open"] for line in status.stdout.splitlines()), (
            status.stdout
        )
        reset = appliance_cli("breaker", "reset", "flaky", "--base-url", appliance.base_url)
        assert reset.returncode == 0, reset.stderr
        assert reset.stdout.startswith("reset: flaky\n")
        breakers = (await client.get("/admin/breakers")).json()["breakers"]
        assert breakers["flaky"]["state"] == "closed" and breakers["flaky"]["times_opened"] == 1
        unknown = appliance_cli("breaker", "reset", "nope", "--base-url", appliance.base_url)
        assert unknown.returncode == 1 and "No engine `nope`" in unknown.stderr


def appliance_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, timeout=60
    )


async def test_unknown_metrics_follow_the_configured_rule(blind: tuple[str, Appliance]) -> None:
    rule, appliance = blind
    async with client_for(appliance) as client:
        idle = await until(client, "big", lambda view: view["admitted"] is not None)
        assert idle["metrics_known"] is False
        # conservative: an engine the appliance cannot see is taken as half busy.
        assert idle["score"]["interactive"] == (0.5 if rule == "conservative" else 0.0)
        async with held_streams(client, "kai", 3):
            await until(client, "big", lambda view: view["in_flight"] == 3)
            # 3 of 4 slots: 0.5 + 0.5 x 0.75 = 0.875 >= 0.85 when conservative; 0.75 when admitting.
            expected = (SMALL, "true") if rule == "conservative" else (BIG, "false")
            assert await served_by(client, "kai") == expected


async def test_an_abandoned_stream_gives_its_slot_back_and_stops_the_engine(
    appliance: Appliance,
) -> None:
    async with client_for(appliance) as client:
        await until(client, "big", lambda view: view["in_flight"] == 0)
        payload = chat("kai", 150, stream=True)
        async with client.stream("POST", "/v1/chat/completions", json=payload) as response:
            async for _ in response.aiter_bytes():
                break  # the first chunk, then the client goes away
        # The 150-token answer would take over 4 s; its slot and the engine are free well before.
        await until(client, "big", lambda view: view["in_flight"] == 0, timeout=2.0)
        load = (await client.get("/admin/load")).json()
        await until(client, "big", lambda view: view["signal"]["engine"] == 0.0, timeout=3.0)
        assert load["gates"]["big"]["in_flight"] == 0
