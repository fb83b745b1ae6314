"""The GPU monitor over the real NVML backend, with a fake `pynvml` (nvidia-ml-py's module) below it."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from appliance.monitor.gpu import GpuMonitor

MIB = 2**20


class NVMLError(Exception):
    pass


@dataclass
class Card:
    name: bytes = b"NVIDIA A100-SXM4-40GB"
    total: int = 40960 * MIB
    used: int = 1024 * MIB
    util: tuple[int, int] = (37, 12)
    temperature: int = 55
    lost: bool = False


@dataclass
class Driver:
    """What the fake library answers; `init_error` stands for a host without the driver."""

    cards: list[Card] = field(default_factory=lambda: [Card()])
    init_error: str | None = None
    inits: int = 0
    shutdowns: int = 0


def fake_pynvml(driver: Driver) -> types.ModuleType:
    module = types.ModuleType("pynvml")
    module.NVMLError = NVMLError  # type: ignore[attr-defined]
    module.NVML_TEMPERATURE_GPU = 0  # type: ignore[attr-defined]

    def card(handle: int) -> Card:
        found = driver.cards[handle]
        if found.lost:
            raise NVMLError("GPU is lost")
        return found

    def init() -> None:
        if driver.init_error:
            raise NVMLError(driver.init_error)
        driver.inits += 1

    def shutdown() -> None:
        driver.shutdowns += 1

    calls = {
        "nvmlInit": init,
        "nvmlShutdown": shutdown,
        "nvmlDeviceGetCount": lambda: len(driver.cards),
        "nvmlDeviceGetHandleByIndex": lambda index: index,
        "nvmlDeviceGetName": lambda h: card(h).name,
        "nvmlDeviceGetMemoryInfo": lambda h: types.SimpleNamespace(
            total=card(h).total, used=card(h).used, free=card(h).total - card(h).used
        ),
        "nvmlDeviceGetUtilizationRates": lambda h: types.SimpleNamespace(
            gpu=card(h).util[0], memory=card(h).util[1]
        ),
        "nvmlDeviceGetTemperature": lambda h, sensor: card(h).temperature,
    }
    for name, function in calls.items():
        setattr(module, name, function)
    return module


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Driver]:
    state = Driver()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(state))
    yield state


def test_reads_memory_utilization_and_temperature_per_device(driver: Driver) -> None:
    driver.cards.append(Card(name=b"NVIDIA A100-SXM4-40GB", used=30000 * MIB, util=(99, 80)))
    monitor = GpuMonitor()
    monitor.poll()
    assert monitor.state == "ok"
    snapshot = monitor.snapshot()
    assert snapshot["devices"][1] == {
        "index": 1,
        "name": "NVIDIA A100-SXM4-40GB",
        "memory_total_mib": 40960,
        "memory_used_mib": 30000,
        "memory_free_mib": 10960,
        "utilization_percent": 99,
        "memory_utilization_percent": 80,
        "temperature_c": 55,
    }
    driver.cards[0].used = 2048 * MIB
    monitor.poll()  # NVML stays initialised between readings
    assert monitor.gpus[0].memory_used == 2048 * MIB
    assert driver.inits == 1
    monitor.close()
    assert driver.shutdowns == 1


def test_no_driver_is_a_clear_state_retried_later(driver: Driver) -> None:
    driver.init_error = "Driver Not Loaded"
    now = [0.0]
    monitor = GpuMonitor(retry_s=60.0, clock=lambda: now[0])
    monitor.poll()
    assert monitor.state == "unavailable: Driver Not Loaded"
    assert monitor.snapshot() == {"state": "unavailable: Driver Not Loaded", "devices": []}
    driver.init_error = None  # the driver is installed while the appliance runs
    now[0] = 30.0
    monitor.poll()
    assert not monitor.available  # not retried before retry_s
    now[0] = 61.0
    monitor.poll()
    assert monitor.available and len(monitor.gpus) == 1


def test_a_gpu_lost_while_running_makes_nvml_unavailable_and_releases_it(driver: Driver) -> None:
    now = [0.0]
    monitor = GpuMonitor(retry_s=10.0, clock=lambda: now[0])
    monitor.poll()
    driver.cards[0].lost = True
    monitor.poll()
    assert monitor.state == "unavailable: GPU 0: nvmlDeviceGetName: GPU is lost"
    assert monitor.gpus == [] and driver.shutdowns == 1
    driver.cards[0].lost = False
    now[0] = 11.0
    monitor.poll()
    assert monitor.available and driver.inits == 2


def test_without_the_library_the_state_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails
    monitor = GpuMonitor()
    monitor.poll()
    assert monitor.state == "unavailable: the nvidia-ml-py package is not installed"


def test_the_real_library_reads_gpus_or_says_why_not() -> None:
    """On a GPU host this reads the cards; here (no driver) it is a clear unavailable state."""
    monitor = GpuMonitor()
    monitor.poll()
    if monitor.available:
        assert monitor.gpus and all(g.memory_total > 0 for g in monitor.gpus)
    else:
        assert monitor.state.startswith("unavailable: ") and len(monitor.state) > 13
    monitor.close()
