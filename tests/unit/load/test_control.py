"""Load control: readings and latency windows become each engine's admission signal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.config import load_config
from appliance.config.schema import Config
from appliance.engines.base import Endpoint
from appliance.errors import NvmlUnavailable
from appliance.gateway.client import engine_clients
from appliance.gateway.gateway import Gateway
from appliance.gateway.hooks import NullAdmission
from appliance.load.control import LoadControl, RateMeter
from appliance.load.priority import Priority
from appliance.monitor.engine_metrics import EngineLoad

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"


class NoDriver:
    """An NVML backend on a host without the driver."""

    def init(self) -> None:
        raise NvmlUnavailable("Driver Not Loaded")

    def shutdown(self) -> None:
        raise AssertionError("never initialised")


def config(**admission: Any) -> Config:
    loaded = load_config(SHIPPED, env={})
    return msgspec.structs.replace(
        loaded, admission=msgspec.structs.replace(loaded.admission, **admission)
    )


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., tuple[LoadControl, Gateway, list[float]]]]:
    gateways: list[Gateway] = []

    def build(**admission: Any) -> tuple[LoadControl, Gateway, list[float]]:
        cfg = config(**admission)
        endpoints = [
            Endpoint(e.id, "http://127.0.0.1:9/v1", "key", e.names, True) for e in cfg.engines
        ]
        clients = engine_clients(endpoints, cfg.llm)
        now = [1000.0]
        monitor = LoadControl(cfg, clients, nvml=NoDriver, clock=lambda: now[0])
        gateway = Gateway(
            cfg, clients, admission=monitor.gateway_admission, recorder=monitor.recorder
        )
        gateways.append(gateway)
        return monitor, gateway, now

    yield build
    for gateway in gateways:
        await gateway.aclose()


async def test_the_gateway_is_built_with_its_admission_and_recorder(make: Any) -> None:
    monitor, gateway, _ = make()
    assert gateway.admission is monitor.admission and gateway.recorder is monitor.recorder
    sections = monitor.detailed()
    assert set(sections) == {"load", "latency", "gpus", "host"}
    assert sections["gpus"] == {"state": "not read yet", "devices": []}


async def test_admission_off_leaves_the_null_admission_but_still_records(make: Any) -> None:
    monitor, gateway, _ = make(enabled=False)
    assert isinstance(gateway.admission, NullAdmission)
    assert gateway.recorder is monitor.recorder
    monitor.refresh()  # nothing to feed, and no error
    assert monitor.load_section()["admission"] == "off"


async def test_fresh_engine_metrics_reach_the_gate(make: Any) -> None:
    monitor, _, now = make()
    monitor.scraper.loads["llama-70b"] = EngineLoad(
        running=16.0, waiting=8.0, kv_usage=0.4, scraped_at=now[0] - 1
    )
    monitor.refresh()
    gate = monitor.admission.gates["llama-70b"]
    assert gate.signal.known and gate.signal.engine == pytest.approx(1.5)
    now[0] += 20  # older than metrics_max_age_s: unknown
    monitor.refresh()
    assert not gate.signal.known and gate.score(1) == pytest.approx(0.5)


async def test_agents_over_their_objective_raise_the_engines_latency_term(make: Any) -> None:
    monitor, _, _ = make(latency_min_samples=5)
    for _ in range(10):  # Kai answers at 12 s on the 70B; objective 8 s
        monitor.latency.add("kai", "llama-3.1-70b-instruct", 12.0, None)
    monitor.refresh()
    assert monitor.admission.gates["llama-70b"].signal.latency == pytest.approx(1.5)
    assert monitor.admission.gates["llama-8b"].signal.latency == 0.0


async def test_light_load_is_a_quarter_of_the_slots(make: Any) -> None:
    monitor, _, _ = make()
    gate = monitor.admission.gates["llama-70b"]  # 16 slots
    gate.in_flight = 4
    assert monitor._lightly_loaded("llama-3.1-70b-instruct")
    gate.in_flight = 5
    assert not monitor._lightly_loaded("llama-3.1-70b-instruct")
    assert not monitor._lightly_loaded("unknown-model")


async def test_background_tasks_start_and_stop_and_read_the_host(make: Any) -> None:
    monitor, _, _ = make(refresh_interval_s=0.01, scrape_interval_s=0.01, gpu_interval_s=0.01)
    await monitor.start()
    for _ in range(200):
        if monitor.host.reading is not None and monitor.gpu.reason == "Driver Not Loaded":
            break
        await asyncio.sleep(0.01)
    await monitor.stop()
    assert monitor.host.snapshot()["state"] == "ok"
    assert monitor.gpu.state == "unavailable: Driver Not Loaded"
    # No engine listens: every scrape failed, and the gates run on the unknown-metrics rule.
    assert all(load.error for load in monitor.scraper.loads.values())
    assert not monitor.admission.gates["llama-70b"].signal.known


async def test_each_class_deadline_leaves_time_for_its_median_answer(make: Any) -> None:
    monitor, _, _ = make(queue_timeout_s=5.0)  # latency_min_samples stays at 20
    for _ in range(5):  # Kai takes 3 s on the 70B; its objective is 8 s, the queue timeout 5 s
        monitor.latency.add("kai", "llama-3.1-70b-instruct", 3.0, None)
    monitor.refresh()
    gate = monitor.admission.gates["llama-70b"]
    assert gate.deadlines[Priority.INTERACTIVE] == pytest.approx(2.0)
    assert gate.deadlines[Priority.ANALYSIS] == pytest.approx(5.0)  # no samples yet


def test_rate_meter_follows_a_steady_rate() -> None:
    meter = RateMeter(tau_s=1.0)
    count = 0
    for step in range(1, 101):
        count += 2  # 2 per 0.1 s = 20 per second
        meter.update(count, step * 0.1)
    assert meter.rate == pytest.approx(20.0, rel=0.01)


async def test_the_guardrail_reserve_follows_its_traffic(make: Any) -> None:
    monitor, _, now = make()
    gate = monitor.admission.gates["llama-8b"]  # 64 slots, 16 reserved by default
    for _ in range(10):  # checks take 1 s on this engine
        monitor.latency.add("guardrail", "llama-3.1-8b-instruct", 1.0, None)
    for _ in range(200):  # 40 checks a second for 20 s
        gate.arrivals[Priority.GUARDRAIL] += 10
        now[0] += 0.25
        monitor.refresh()
    assert gate.reserve == pytest.approx(53, abs=2)  # 40 + 2 x sqrt(40)
    assert gate.ceilings[Priority.INTERACTIVE] == 64 - gate.reserve
    for _ in range(200):  # the checks stop: back to the configured share
        now[0] += 0.25
        monitor.refresh()
    assert gate.reserve == 16
