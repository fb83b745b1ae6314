"""The NVML seam: readings through the protocol, and a host without the driver is no crash."""

from __future__ import annotations

import pytest

from appliance.errors import NvmlQueryError, NvmlUnavailable
from appliance.monitor.nvml import (
    GpuInfo,
    MigInstance,
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


def _mig(n: int, gib: int) -> MigInstance:
    return MigInstance(
        name=f"NVIDIA A100-SXM4-40GB MIG 3g.20gb #{n}",
        uuid=f"MIG-0000000{n}-aaaa-bbbb-cccc-000000000000",
        memory_total=gib * GIB,
        memory_used=GIB,
        memory_free=(gib - 1) * GIB,
    )


def test_a_gpu_in_mig_mode_is_its_instances_each_named_by_its_uuid():
    nvml = FakeNvml(
        devices=[FakeDevice(mig=[_mig(1, 20), _mig(2, 20)]), FakeDevice(name="NVIDIA L4")]
    )
    gpus = read_gpus(nvml)
    assert [(g.index, g.memory_total, g.mig_parent) for g in gpus] == [
        (0, 20 * GIB, 0),
        (1, 20 * GIB, 0),
        (2, 40 * GIB, None),
    ]
    assert [g.cuda_name for g in gpus] == [
        "MIG-00000001-aaaa-bbbb-cccc-000000000000",
        "MIG-00000002-aaaa-bbbb-cccc-000000000000",
        "1",  # the whole L4 is still CUDA's device 1
    ]
    assert gpus[0].utilization_gpu is None and gpus[0].memory_free == 19 * GIB


def test_mig_instances_are_planned_as_devices_and_launched_by_uuid(monkeypatch, tmp_path):
    import os

    from appliance.config.schema import EngineConfig
    from appliance.engines import vllm
    from appliance.placement.check import plan_profile
    from appliance.placement.gpus import from_nvml

    exe = tmp_path / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    nvml = FakeNvml(devices=[FakeDevice(mig=[_mig(1, 20), _mig(2, 20)])])
    infos = read_gpus(nvml)
    gpus = from_nvml(infos)
    assert all(g.mig for g in gpus)
    small = EngineConfig(
        id="small", kind="vllm", model="llama-3.1-8b-instruct", port=8101,
        quantization="awq", max_model_len=4096, max_num_seqs=4,
    )  # fmt: skip
    from appliance.config import load_config
    from tests.unit.placement.conftest import MODELS_TOML

    catalog = load_config(MODELS_TOML, profile="budget", env={}).catalog
    plan = plan_profile("p", [small], catalog, read=lambda: infos)
    entry = plan.engine("small")
    assert plan.feasible and entry is not None and len(entry.gpus) == 1
    spec = vllm.launch_spec(small, "k", entry)
    assert spec.env["CUDA_VISIBLE_DEVICES"].startswith("MIG-")
    split = EngineConfig(
        id="split", kind="vllm", model="llama-3.1-8b-instruct", port=8102,
        quantization="awq", max_model_len=4096, max_num_seqs=4, tensor_parallel_size=2,
    )  # fmt: skip
    plan = plan_profile("p", [split], catalog, read=lambda: infos)
    assert not plan.feasible
    assert any("MIG" in problem for e in plan.engines for problem in e.problems)
