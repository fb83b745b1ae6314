"""However the appliance ends, no vLLM process is left: EngineCore and workers included."""

from __future__ import annotations

import signal
from pathlib import Path

import psutil
import pytest

from tests.support.running import pid_alive, wait_for
from tests.vllm.conftest import VllmAppliance, start_appliance


def engine_tree(appliance: VllmAppliance) -> list[psutil.Process]:
    tree = appliance.tree()
    names = " ".join(p.name() for p in tree)
    assert "VLLM::EngineCor" in names or "EngineCore" in names, names
    assert any(p.pid == appliance.engine_pid() for p in tree)
    return tree


@pytest.mark.ends_appliance
def test_sigterm_stops_the_appliance_and_every_engine_process(appliance: VllmAppliance):
    tree = engine_tree(appliance)
    # Exiting by the SIGTERM itself (uvicorn re-raises it once drained) is a clean stop.
    assert appliance.stop(signal.SIGTERM, timeout=60) in (0, -signal.SIGTERM)
    wait_for(lambda: not any(pid_alive(p.pid) for p in tree), timeout=30)


@pytest.mark.ends_appliance
def test_sigkill_of_the_appliance_leaves_no_engine_process(tmp_path: Path, tiny_model: Path):
    appliance = start_appliance(tmp_path, tiny_model)
    tree: list[psutil.Process] = []
    try:
        tree = engine_tree(appliance)
        appliance.stop(signal.SIGKILL)
        wait_for(lambda: not any(pid_alive(p.pid) for p in tree), timeout=30)
    finally:
        for proc in tree:
            if pid_alive(proc.pid):
                proc.kill()
