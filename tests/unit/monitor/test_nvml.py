"""The NVML seam: readings through the protocol, and a host without the driver is no crash."""

from __future__ import annotations

import pytest

from appliance.monitor.nvml import (
    GpuInfo,
    NvmlQueryError,
    NvmlUnavailable,
    RealNvml,
    nvml_session,
    read_devices,
    read_gpus,
)
from tests.unit.monitor.fake_nvml import GIB, FakeDevice, FakeNvml


def test_every_gpu_is_read_and_nvml_is_released():
    nvml = FakeNvml(devices=[FakeDevice(used=2 * GIB), FakeDevice(name="NVIDIA H100 80GB HBM3")])
    gpus = read_gpus(nvml)
    assert gpus == [
        GpuInfo(index=0, name="NVIDIA A100-SXM4-40GB", memory_total=40 * GIB,
                memory_used=2 * GIB, memory_free=38 * GIB, utilization_gpu=12,
                utilization_memory=3, temperature_c=41),
        GpuInfo(index=1, name="NVIDIA H100 80GB HBM3", memory_total=40 * GIB, memory_used=0,
                memory_free=40 * GIB, utilization_gpu=12, utilization_memory=3,
                temperature_c=41),
    ]  # fmt: skip
    assert (nvml.inits, nvml.shutdowns, nvml.live) == (1, 1, False)


def test_readings_a_gpu_does_not_support_are_none():
    nvml = FakeNvml(devices=[FakeDevice(utilization=None, temperature=None)])
    (gpu,) = read_gpus(nvml)
    assert (gpu.utilization_gpu, gpu.utilization_memory, gpu.temperature_c) == (None, None, None)
    assert gpu.memory_total == 40 * GIB


def test_no_driver_is_nvml_unavailable_with_the_reason():
    nvml = FakeNvml(init_error="Driver Not Loaded")
    with pytest.raises(NvmlUnavailable) as caught:
        read_gpus(nvml)
    assert caught.value.reason == "Driver Not Loaded"
    assert str(caught.value) == "NVML unavailable: Driver Not Loaded"
    assert nvml.shutdowns == 0


def test_a_gpu_that_cannot_say_its_memory_makes_nvml_unusable_and_still_releases_it():
    nvml = FakeNvml(devices=[FakeDevice(), FakeDevice(broken=True)])
    with pytest.raises(NvmlUnavailable) as caught:
        read_gpus(nvml)
    assert caught.value.reason == "GPU 1: GPU is lost"
    assert (nvml.shutdowns, nvml.live) == (1, False)


def test_a_failing_device_count_is_nvml_unavailable():
    with pytest.raises(NvmlUnavailable, match="Unknown Error"):
        read_gpus(FakeNvml(count_error="Unknown Error"))


def test_a_session_serves_repeated_reads_for_pollers():
    nvml = FakeNvml(devices=[FakeDevice()])
    with nvml_session(nvml) as session:
        first = read_devices(session)
        nvml.devices[0].used = 10 * GIB
        second = read_devices(session)
    assert (first[0].memory_used, second[0].memory_used) == (0, 10 * GIB)
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_the_real_nvml_reads_gpus_or_says_why_not():
    """On a GPU host this reads the cards; elsewhere it must be a clear NvmlUnavailable."""
    try:
        gpus = read_gpus()
    except NvmlUnavailable as exc:
        assert exc.reason
    else:
        assert all(g.memory_total > 0 and g.name for g in gpus)
        assert [g.index for g in gpus] == list(range(len(gpus)))


def test_the_real_nvml_refuses_queries_before_init_and_shuts_down_idempotently():
    nvml = RealNvml()
    with pytest.raises(NvmlQueryError, match="not initialised"):
        nvml.device_count()
    nvml.shutdown()  # nothing to release: no error
