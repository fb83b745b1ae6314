"""The composition root: parts wired once, background parts run in order, and a part that fails
to start is said in the log while the appliance still gets READY."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import msgspec
import pytest

from appliance.config import load_config
from appliance.core import assemble
from appliance.lifecycle import Background
from appliance.root import Lifecycle, wire

SHIPPED = Path(__file__).resolve().parents[2] / "models.toml"


class Part(Background):
    def __init__(self, name: str, log: list[str], *, broken: bool = False) -> None:
        self.name, self.log, self.broken = name, log, broken

    async def start(self) -> None:
        if self.broken:
            raise OSError("cannot open the benchmark database")
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


async def test_a_failing_background_start_is_logged_not_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    appliance = assemble(load_config(SHIPPED, env={}), [])
    log: list[str] = []
    parts = [Part("a", log), Part("broken", log, broken=True), Part("b", log)]
    with caplog.at_level(logging.ERROR, logger="appliance.root"):
        async with Lifecycle(appliance, parts):
            await asyncio.wait_for(appliance.ready.wait(), timeout=10)
            assert log == ["start a", "start b"]
    assert log == ["start a", "start b", "stop b", "stop a"]  # reverse order; never the broken
    assert "a background service did not start (Part)" in caplog.text
    assert "cannot open the benchmark database" in caplog.text


async def test_background_parts_stop_first_and_once() -> None:
    appliance = assemble(load_config(SHIPPED, env={}), [])
    log: list[str] = []
    lifecycle = Lifecycle(appliance, [Part("bench", log)])
    async with lifecycle:
        await asyncio.wait_for(appliance.ready.wait(), timeout=10)
        await lifecycle.stop_background()  # the server does this before closing the listener
        assert log == ["start bench", "stop bench"]
    assert log == ["start bench", "stop bench"]


def test_the_features_follow_the_config(tmp_path: Path) -> None:
    loaded = load_config(SHIPPED, env={})
    config = msgspec.structs.replace(
        loaded,
        server=msgspec.structs.replace(loaded.server, data_dir=str(tmp_path), lb_agent_port=9),
    )
    wiring = wire(assemble(config, []))
    assert wiring.bench is not None and wiring.agent_check is not None
    assert wiring.background == (
        wiring.appliance.load,
        wiring.agent_check,
        wiring.bench,
        wiring.ops.sampler,
    )
    assert wiring.bench.live_inflight() == 0
    assert wiring.bench.targets["kai"].base_url == f"http://127.0.0.1:{config.server.port}/v1"
    assert wiring.bench.targets["kai"].model == "kai"  # through the appliance, by agent name
    off = msgspec.structs.replace(
        config,
        bench=msgspec.structs.replace(config.bench, enabled=False),
        server=msgspec.structs.replace(config.server, lb_agent_port=0),
    )
    quiet = wire(assemble(off, []))
    assert quiet.bench is None and quiet.agent_check is None
    assert quiet.background == (quiet.appliance.load, quiet.ops.sampler)


def test_the_gateway_is_built_with_the_load_control_and_the_prober() -> None:
    appliance = assemble(load_config(SHIPPED, env={}), [])
    gateway = appliance.gateway
    assert gateway.admission is appliance.load.admission
    assert gateway.recorder is appliance.load.recorder
    assert gateway.known_down == appliance.liveness.known_down
