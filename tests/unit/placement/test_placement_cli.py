"""`appliance plan`: the table, the JSON, the exit status, and where the GPUs came from."""

from __future__ import annotations

import argparse
import json

import pytest

from appliance.cli import main
from appliance.placement.cli import add_plan_parser, run_plan
from tests.unit.monitor.fake_nvml import GIB, FakeDevice, FakeNvml
from tests.unit.placement.conftest import MODELS_TOML

NO_DRIVER = "Driver Not Loaded"


def plan(*argv: str, nvml: FakeNvml | None = None) -> int:
    parser = argparse.ArgumentParser()
    add_plan_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", "--config", str(MODELS_TOML), *argv])
    return run_plan(args, nvml=nvml or FakeNvml(init_error=NO_DRIVER))


def a100s(used: int = 0) -> FakeNvml:
    return FakeNvml(devices=[FakeDevice(used=used), FakeDevice()])


def test_a_profile_that_fits_prints_its_table_and_exits_0(capsys):
    assert plan("--profile", "balanced") == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "Plan for profile 'balanced' on 2x A100-40GB (the profile's declared GPUs; "
        f"no NVIDIA driver here: {NO_DRIVER})"
    )
    header = next(line for line in out.splitlines() if line.startswith("engine"))
    for column in ("GPUs", "TP", "weights/GPU", "KV/token", "fraction", "KV tokens",
                   "full-length seqs", "verdict"):  # fmt: skip
        assert column in header
    row = next(line for line in out.splitlines() if line.startswith("llama-70b "))
    assert "0,1" in row and "awq-4bit" in row and "320 KiB" in row and "0.69" in row
    assert row.endswith("3 of 3 x 8192     fits")
    assert "GPU 0 A100-40GB: 0.95 of 39.4 GiB (llama-70b 0.69, llama-8b 0.26); at most 0.95" in out
    assert "Fits: every engine's KV cache holds max_num_seqs sequences" in out


def test_a_guide_original_exits_1_with_the_reason_and_the_fixes(capsys):
    assert plan("--profile", "guide-balanced") == 1
    out = capsys.readouterr().out
    assert "Profile 'guide-balanced' does not fit 2x A100-40GB:" in out
    assert "65.8 GiB of weights" in out
    assert "Changes that fit (each checked by planning again with it applied):" in out
    assert "  1. " in out and "-> fits: " in out


def test_json_holds_the_plan(capsys):
    assert plan("--profile", "performance", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["feasible"] is True and data["profile"] == "performance"
    engines = {e["engine_id"]: e for e in data["engines"]}
    assert engines["qwen-14b"]["gpus"] == [1]
    assert engines["qwen-14b"]["gpu_memory_utilization"] == 0.52
    assert engines["llama-8b"]["kv_bytes_per_token"] == 131072
    assert data["gpu_use"][1]["fractions"] == {"llama-8b": 0.42, "qwen-14b": 0.52}


def test_gpus_plans_a_what_if(capsys):
    assert plan("--profile", "guide-budget", "--gpus", "2xH200-141GB") == 0
    assert "on 2x H200-141GB (what-if: --gpus 2xH200-141GB)" in capsys.readouterr().out


def test_a_what_if_with_fewer_gpus_than_tensor_parallel_suggests_lowering_it(capsys):
    assert plan("--profile", "budget", "--gpus", "1xH100-80GB") == 1
    out = capsys.readouterr().out
    assert "tensor_parallel_size 2 needs 2 GPUs; there are 1" in out
    assert "llama-70b: tensor_parallel_size = 1 (there are only 1 GPUs)" in out


def test_all_plans_every_profile_and_fails_only_for_runnable_ones(capsys):
    nvml = FakeNvml(init_error=NO_DRIVER)
    assert plan("--all", nvml=nvml) == 0
    out = capsys.readouterr().out
    for name in ("sim", "budget", "balanced", "performance", "guide-budget", "guide-balanced",
                 "guide-performance"):  # fmt: skip
        assert f"Plan for profile '{name}'" in out
    assert plan("--all", "--gpus", "1xA100-40GB") == 1
    capsys.readouterr()


def test_all_as_json_is_a_list(capsys):
    assert plan("--all", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert [p["profile"] for p in data][:2] == ["sim", "guide-budget"]


def test_nvml_gpus_are_used_when_present(capsys):
    nvml = a100s()
    assert plan("--profile", "budget", nvml=nvml) == 0
    out = capsys.readouterr().out
    assert "on 2x NVIDIA A100-SXM4-40GB (read from NVML on this host)" in out
    assert (nvml.inits, nvml.shutdowns) == (1, 1)


def test_memory_held_by_other_processes_can_make_a_plan_fail(capsys):
    assert plan("--profile", "balanced", nvml=a100s(used=10 * GIB)) == 1
    out = capsys.readouterr().out
    assert "other processes hold 10.0 GiB" in out


def test_nvml_without_gpus_falls_back_to_the_declared_ones(capsys):
    assert plan("--profile", "budget", nvml=FakeNvml()) == 0
    assert "the profile's declared GPUs; NVML sees no GPUs on this host" in capsys.readouterr().out


def test_nvml_is_read_once_for_all_profiles_and_not_for_sim(capsys):
    nvml = a100s()
    plan("--all", nvml=nvml)
    assert nvml.inits == 1
    sim = a100s()
    assert plan("--profile", "sim", nvml=sim) == 0
    assert "No vLLM engines in this profile" in capsys.readouterr().out
    assert sim.inits == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpus", "two A100s"], "command line: --gpus: expected NxNAME-MEMGB"),
        (["--profile", "nope"], "profile: expected one of"),
    ],
)
def test_bad_input_exits_2_with_one_line(capsys, argv, message):
    assert plan(*argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_missing_file_exits_2(capsys, tmp_path):
    parser = argparse.ArgumentParser()
    add_plan_parser(parser.add_subparsers())
    args = parser.parse_args(["plan", "--config", str(tmp_path / "none.toml")])
    assert run_plan(args) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_appliance_command_has_plan(capsys):
    argv = ["plan", "--config", str(MODELS_TOML), "--profile", "guide-budget", "--gpus",
            "2xA100-40GB"]  # fmt: skip
    assert main(argv) == 1
    assert "quantize to AWQ 4-bit" in capsys.readouterr().out
