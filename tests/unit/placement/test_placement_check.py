"""check_plan: what `appliance serve` asks before it launches vLLM engines."""

from __future__ import annotations

import msgspec
import pytest

from appliance.config import load_config
from appliance.errors import ConfigError, NvmlUnavailable, PlacementError
from appliance.monitor.nvml import GpuInfo
from appliance.placement import check_plan, plan_profile
from tests.unit.placement.conftest import MODELS_TOML

GIB = 1 << 30


def a100(index: int, used: int = 0) -> GpuInfo:
    total = 40 * GIB
    return GpuInfo(index=index, name="NVIDIA A100-SXM4-40GB", memory_total=total,
                   memory_used=used, memory_free=total - used)  # fmt: skip


def config(profile: str):
    return load_config(MODELS_TOML, profile=profile, env={})


def test_the_gpus_nvml_read_are_planned_and_the_plan_returned():
    plan = check_plan(config("budget"), gpus=[a100(0), a100(1)])
    assert plan.feasible and plan.gpu_source == "nvml"
    engine = plan.engine("llama-70b")
    assert engine is not None and engine.gpus == (0, 1)
    assert engine.gpu_memory_utilization == 0.94


def test_a_plan_that_does_not_fit_the_gpus_at_hand_is_refused_with_the_numbers():
    with pytest.raises(PlacementError) as caught:
        check_plan(config("budget"), gpus=[a100(0), a100(1, used=30 * GIB)])
    text = caught.value.message
    assert text.startswith("Profile 'budget' does not fit 2x NVIDIA A100-SXM4-40GB:")
    assert "other processes hold 30.0 GiB" in text


def test_a_profile_without_vllm_engines_needs_no_gpus():
    plan = check_plan(config("sim"))
    assert plan.feasible and plan.engines == () and plan.gpu_source == "none"
    assert set(plan.not_placed) == {"llama-70b", "llama-8b", "qwen-32b"}


def no_driver() -> list[GpuInfo]:
    raise NvmlUnavailable("NVML Shared Library Not Found")


def test_without_a_driver_the_declared_gpus_are_planned_and_the_reason_kept():
    cfg = config("performance")
    plan = plan_profile(cfg.profile, cfg.engines, cfg.catalog, declared=cfg.gpus, read=no_driver)
    assert plan.feasible and plan.gpu_source == "declared"
    assert plan.gpus_note == (
        "the profile's declared GPUs; no NVIDIA driver here: NVML Shared Library Not Found"
    )


def test_without_a_driver_or_declared_gpus_vllm_engines_cannot_be_placed():
    cfg = config("budget")
    plan = plan_profile(cfg.profile, cfg.engines, cfg.catalog, declared="none", read=no_driver)
    assert not plan.feasible and plan.gpu_source == "none"
    assert plan.problems[0].startswith("no GPUs to place the vLLM engines on")


def test_a_bad_declared_spec_is_a_config_error_naming_the_key():
    cfg = msgspec.structs.replace(config("budget"), gpus="2xA100")
    with pytest.raises(ConfigError) as caught:
        plan_profile(cfg.profile, cfg.engines, cfg.catalog, declared=cfg.gpus,
                     source=cfg.source, read=no_driver)  # fmt: skip
    assert "profiles.budget.gpus: expected NxNAME-MEMGB" in str(caught.value)
