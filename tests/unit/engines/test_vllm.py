"""The vllm engine kind: the exact `vllm serve` command and environment for each engine."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.config.schema import EngineConfig
from appliance.engines import vllm, vllm_parser
from appliance.errors import ConfigError
from appliance.placement import check_plan

MODELS_TOML = Path(__file__).resolve().parents[3] / "models.toml"
KEY = "internal-key"


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch) -> Path:
    """An executable named vllm first on PATH (never run here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return exe


def engine(**overrides) -> EngineConfig:
    settings = {"id": "e", "kind": "vllm", "model": "org/model", "port": 8101}
    settings.update(overrides)
    return EngineConfig(**settings)


def test_the_balanced_profile_launches_exactly_these_commands(fake_vllm):
    config = load_config(MODELS_TOML, profile="balanced", env={})
    plan = check_plan(config, gpus="2xA100-40GB")
    big, small = config.engines
    spec = vllm.launch_spec(big, KEY, plan.engine("llama-70b"))
    assert spec.argv == (
        str(fake_vllm), "serve", "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
        "--served-model-name", "llama-3.1-70b-instruct",
        "--host", "127.0.0.1",
        "--port", "8101",
        "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.69",
        "--max-model-len", "8192",
        "--max-num-seqs", "3",
        "--max-log-len", "0",
        "--enable-prefix-caching",
        "--generation-config", "vllm",
        "--disable-access-log-for-endpoints", "/health,/metrics",
        "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}',
    )  # fmt: skip
    assert spec.env == {
        "VLLM_API_KEY": KEY,
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "PYTHONUNBUFFERED": "1",
    }
    assert spec.gpus == (0, 1)
    assert spec.health_url == "http://127.0.0.1:8101/health"
    assert spec.startup_timeout_s == 1800.0
    assert KEY not in spec.argv
    spec = vllm.launch_spec(small, KEY, plan.engine("llama-8b"))
    assert spec.argv[2:] == (
        "meta-llama/Llama-3.1-8B-Instruct",
        "--served-model-name", "llama-3.1-8b-instruct",
        "--host", "127.0.0.1",
        "--port", "8102",
        "--tensor-parallel-size", "2",
        "--gpu-memory-utilization", "0.26",
        "--max-model-len", "4096",
        "--max-num-seqs", "6",
        "--max-log-len", "0",
        "--quantization", "fp8",
        "--enable-prefix-caching",
        "--generation-config", "vllm",
        "--disable-access-log-for-endpoints", "/health,/metrics",
        "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}',
    )  # fmt: skip
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "0,1"


def test_the_endpoint_is_on_loopback_with_the_internal_key(fake_vllm):
    point = vllm.endpoint(engine(served_name="m", aliases=("kai",)), KEY)
    assert point.base_url == "http://127.0.0.1:8101/v1"
    assert point.api_key == KEY and point.names == ("m", "kai") and point.launched


def test_a_local_model_directory_runs_offline_by_absolute_path(fake_vllm, tmp_path, monkeypatch):
    model = tmp_path / "models" / "llama"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = vllm.launch_spec(engine(model="./models/llama", served_name="llama"), KEY, None)
    assert spec.argv[2] == str(model)
    assert spec.env["HF_HUB_OFFLINE"] == "1" and spec.env["TRANSFORMERS_OFFLINE"] == "1"


def test_a_hub_model_is_not_forced_offline(fake_vllm):
    spec = vllm.launch_spec(engine(), KEY, None)
    assert "HF_HUB_OFFLINE" not in spec.env and "TRANSFORMERS_OFFLINE" not in spec.env


def test_awq_and_gptq_checkpoints_are_left_to_pick_their_fast_kernels(fake_vllm):
    for method in ("awq", "gptq"):
        argv = vllm.launch_spec(engine(quantization=method), KEY, None).argv
        assert "--quantization" not in argv


def test_fp8_is_passed_unless_the_local_checkpoint_declares_its_own(fake_vllm, tmp_path):
    assert _pair(
        vllm.launch_spec(engine(quantization="fp8"), KEY, None).argv, "--quantization"
    ) == ("--quantization", "fp8")
    (tmp_path / "config.json").write_text(
        json.dumps({"quantization_config": {"quant_method": "compressed-tensors"}})
    )
    argv = vllm.launch_spec(engine(model=str(tmp_path), quantization="fp8"), KEY, None).argv
    assert "--quantization" not in argv


def test_without_a_plan_the_engines_own_gpus_and_fraction_are_used(fake_vllm):
    spec = vllm.launch_spec(engine(gpus=(1,), gpu_memory_utilization=0.5), KEY, None)
    assert spec.env["CUDA_VISIBLE_DEVICES"] == "1" and spec.gpus == (1,)
    assert _pair(spec.argv, "--gpu-memory-utilization") == ("--gpu-memory-utilization", "0.50")
    spec = vllm.launch_spec(engine(), KEY, None)
    assert "CUDA_VISIBLE_DEVICES" not in spec.env and spec.gpus == ()
    assert _pair(spec.argv, "--gpu-memory-utilization") == ("--gpu-memory-utilization", "0.92")


def test_dtype_prefix_caching_timeout_aliases_and_extra_args(fake_vllm):
    spec = vllm.launch_spec(
        engine(
            served_name="m",
            aliases=("a1", "a2"),
            dtype="bfloat16",
            enable_prefix_caching=False,
            startup_timeout_s=600.0,
            extra_args=("--enforce-eager", "--max-num-batched-tokens", "4096"),
        ),
        KEY,
        None,
    )
    argv = spec.argv
    at = argv.index("--served-model-name")
    assert argv[at : at + 4] == ("--served-model-name", "m", "a1", "a2")
    assert _pair(argv, "--dtype") == ("--dtype", "bfloat16")
    assert "--no-enable-prefix-caching" in argv and "--enable-prefix-caching" not in argv
    assert argv[-3:] == ("--enforce-eager", "--max-num-batched-tokens", "4096")
    assert spec.startup_timeout_s == 600.0


@pytest.mark.parametrize(
    "arg",
    ["--host", "--port=9000", "--api-key", "--enable-log-requests", "--enable-log-outputs",
     "--max-log-len=100", "--gpu-memory-utilization",
     # underscores, abbreviations, `=` and dotted forms, negations, short aliases
     "--enable_log_requests", "--max_log_len", "--enable-log-req", "--enable_log_req=1",
     "--max-model", "--served_model_name", "--no-enable-log-requests",
     "--no-enable-prefix-caching", "--tensor_parallel_size=2", "-tp", "-tp=2", "-tp2", "-t",
     "-q", "-qfp8", "-q=fp8", "--quantization.x", "--model", "--uds",
     "--config", "--config=vllm.yaml", "--conf"],
)  # fmt: skip
def test_extra_args_may_not_override_what_the_appliance_sets(fake_vllm, arg):
    with pytest.raises(ConfigError) as caught:
        vllm.launch_spec(engine(extra_args=(arg, "x")), KEY, None)
    message = str(caught.value)
    assert message.startswith("models.toml: engines.e.extra_args: expected no --")
    assert repr(arg) in message


@pytest.mark.parametrize(
    "args",
    [("--enforce-eager",), ("--max-num-batched-tokens", "4096"), ("--kv-cache-dtype=fp8",),
     ("-O3",), ("--compilation-config.mode", "3"), ("--swap-space", "-1"), ("-pp", "2"),
     ("--hf-overrides", "{}")],
)  # fmt: skip
def test_other_vllm_flags_pass_the_guard(fake_vllm, args):
    assert vllm.launch_spec(engine(extra_args=args), KEY, None).argv[-len(args) :] == args


def test_the_hub_id_says_whether_a_checkpoint_is_already_quantized(fake_vllm):
    for model in ("neuralmagic/Meta-Llama-3.1-8B-Instruct-FP8", "org/Qwen2.5-7B-Instruct-AWQ",
                  "TheBloke/Llama-2-7B-GPTQ", "unsloth/llama-3-8b-bnb-4bit",
                  "RedHatAI/Llama-3.1-8B-Instruct-quantized.w8a8"):  # fmt: skip
        argv = vllm.launch_spec(engine(model=model, quantization="fp8"), KEY, None).argv
        assert "--quantization" not in argv, model
    for model in ("meta-llama/Llama-3.1-8B-Instruct", "org/fp8able-model"):
        argv = vllm.launch_spec(engine(model=model, quantization="fp8"), KEY, None).argv
        assert _pair(argv, "--quantization") == ("--quantization", "fp8"), model


def test_bitsandbytes_without_vllms_plugin_is_a_config_error(fake_vllm):
    with pytest.raises(ConfigError) as caught:
        vllm.launch_spec(engine(quantization="bitsandbytes"), KEY, None)
    message = str(caught.value)
    assert "engines.e.quantization" in message and "vllm-bnb-plugin" in message


FAKE_MAKE_ARG_PARSER = """
import argparse
def make_arg_parser(parser):
    parser.add_argument("model_tag", nargs="?")
    for flag in ("--host", "--port", "--served-model-name", "--gpu-memory-utilization",
                 "--max-model-len", "--max-num-seqs", "--max-log-len", "--quantization",
                 "--dtype", "--generation-config", "--disable-access-log-for-endpoints",
                 "--max-num-batched-tokens", "--kv-cache-dtype", "--structured-outputs-config"):
        parser.add_argument(flag, nargs="+" if flag == "--served-model-name" else None)
    parser.add_argument("--tensor-parallel-size", "-tp", type=int)
    parser.add_argument("--enable-log-requests", action=argparse.BooleanOptionalAction)
    parser.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction)
    parser.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction)
    parser.add_argument("--some-new-alias-of-logging", dest="enable_log_requests",
                        action="store_true")
    return parser
"""


@pytest.fixture
def fake_vllm_package(tmp_path, monkeypatch) -> vllm_parser.VllmParser:
    """A stand-in vLLM package with the two modules the parser check imports."""
    root = tmp_path / "site"
    for package in ("vllm", "vllm/utils", "vllm/entrypoints", "vllm/entrypoints/launchers"):
        (root / package).mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
    (root / "vllm/utils/argparse_utils.py").write_text(
        "import argparse\nclass FlexibleArgumentParser(argparse.ArgumentParser):\n    pass\n"
    )
    (root / "vllm/entrypoints/launchers/cli_args.py").write_text(FAKE_MAKE_ARG_PARSER)
    monkeypatch.setenv("PYTHONPATH", str(root))
    vllm_parser._run_parser.cache_clear()
    return vllm_parser.VllmParser(sys.executable)


def test_vllms_own_parser_turns_an_unknown_flag_into_a_config_error(fake_vllm_package):
    vllm.check_engine(engine(extra_args=("--max-num-batched-tokens", "4096")), fake_vllm_package)
    with pytest.raises(ConfigError) as caught:
        vllm.check_engine(engine(extra_args=("--no-such-flag",)), fake_vllm_package)
    message = str(caught.value)
    assert message.startswith("models.toml: engines.e.extra_args: expected arguments vLLM")
    assert "unrecognized arguments: --no-such-flag" in message


def test_vllms_own_parser_catches_a_spelling_the_guard_does_not_know(fake_vllm_package):
    with pytest.raises(ConfigError) as caught:
        vllm.check_engine(engine(extra_args=("--some-new-alias-of",)), fake_vllm_package)
    assert "no --enable-log-requests in any spelling" in str(caught.value)


def test_a_parser_that_cannot_load_leaves_the_static_guard(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no vllm package there
    vllm_parser._run_parser.cache_clear()
    vllm.check_engine(engine(extra_args=("--anything",)), vllm_parser.VllmParser(sys.executable))


def test_the_parser_is_found_through_the_vllm_commands_python(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "vllm"
    exe.write_text(f"#!{sys.executable}\nimport sys\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    found = vllm_parser.VllmParser.find()
    assert found is not None and found.python == sys.executable


def test_vllm_beside_the_appliances_python_is_found(tmp_path, monkeypatch):
    venv_bin = tmp_path / "venv" / "bin"
    venv_bin.mkdir(parents=True)
    exe = venv_bin / "vllm"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(venv_bin / "python"))
    assert vllm.launch_spec(engine(), KEY, None).argv[0] == str(exe)


def test_no_vllm_anywhere_is_a_clear_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ConfigError) as caught:
        vllm.launch_spec(engine(), KEY, None)
    assert "a `vllm` executable on PATH" in str(caught.value)


def test_an_engine_without_a_port_is_a_config_error(fake_vllm):
    with pytest.raises(ConfigError):
        vllm.endpoint(engine(port=None), KEY)


def _pair(argv: tuple[str, ...], flag: str) -> tuple[str, str]:
    at = argv.index(flag)
    return argv[at], argv[at + 1]


def test_config_validate_refuses_a_reserved_flag_in_a_vllm_engines_extra_args(
    fake_vllm, tmp_path, capsys
):
    from appliance.cli import main

    text = MODELS_TOML.read_text()
    anchor = "max_model_len = 8192\nmax_num_seqs = 3\n"
    assert anchor in text
    bad = text.replace(anchor, anchor + 'extra_args = ["--enable_log_requests"]\n', 1)
    path = tmp_path / "models.toml"
    path.write_text(bad)
    assert main(["config", "validate", "--config", str(path), "--profile", "balanced"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("appliance: configuration error: models.toml: engines.llama-70b.")
    assert "no --enable-log-requests in any spelling" in err
    good = tmp_path / "good.toml"
    good.write_text(text)
    assert main(["config", "validate", "--config", str(good), "--profile", "balanced"]) == 0


def test_a_cpu_engine_gets_its_kv_cache_size_runs_eager_and_sees_no_gpus(fake_vllm, tmp_path):
    from tests.unit.placement.test_placement_host import cpu_config

    config = cpu_config(tmp_path)
    plan = check_plan(config)
    spec = vllm.launch_spec(config.engines[0], KEY, plan.engine("tiny-llama"))
    assert spec.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert spec.env["VLLM_TARGET_DEVICE"] == "cpu"
    assert "CUDA_VISIBLE_DEVICES" not in spec.env and spec.gpus == ()
    assert spec.argv[-1] == "--enforce-eager"
    assert _pair(spec.argv, "--structured-outputs-config")[1] == (
        '{"backend":"guidance","disable_any_whitespace":true}'
    )


def test_extra_args_may_choose_compilation_and_another_structured_output_setup(fake_vllm, tmp_path):
    from tests.unit.placement.test_placement_host import cpu_config

    extra = ("--no-enforce-eager", "--structured-outputs-config.backend=xgrammar")
    config = cpu_config(tmp_path, extra_args=extra)
    spec = vllm.launch_spec(config.engines[0], KEY, check_plan(config).engine("tiny-llama"))
    assert "--enforce-eager" not in spec.argv
    assert "--structured-outputs-config" not in spec.argv
    assert spec.argv[-2:] == extra
