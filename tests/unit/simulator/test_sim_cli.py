"""Command-line flags: vLLM's names, the simulator's knobs, GPU flags accepted and ignored."""

from __future__ import annotations

import pytest

from appliance.simulator.cli import parse_args


def test_the_model_may_come_as_a_positional_argument_like_vllm_serve():
    options, ignored, _ = parse_args(["serve", "meta-llama/Llama-3.1-70B-Instruct"])
    assert options.model == "meta-llama/Llama-3.1-70B-Instruct"
    assert options.served_model_names == ("meta-llama/Llama-3.1-70B-Instruct",)
    assert options.size_class == "70B"
    assert (options.host, options.port, options.time_scale) == ("127.0.0.1", 8000, 1.0)
    assert ignored == []


def test_served_names_knobs_and_faults():
    options, _, _ = parse_args([
        "--model", "llama-3.1-8b-instruct", "--served-model-name", "a", "b", "--port", "9001",
        "--max-num-seqs", "4", "--max-model-len", "2048", "--size-class", "32B",
        "--decode-tokens-per-s", "80", "--kv-cache-tokens", "5000", "--time-scale", "0",
        "--seed", "3", "--error-rate", "0.1", "--stall-rate", "0.2", "--stall-s", "1.5",
        "--crash-after", "7", "--slow-start-s", "2", "--malformed-rate", "0.3",
        "--legacy-metric-names", "--api-key", "secret",
    ])  # fmt: skip
    assert options.served_model_names == ("a", "b")
    assert (options.max_num_seqs, options.max_model_len, options.kv_budget) == (4, 2048, 5000)
    assert options.size_class == "32B" and options.profile().decode_tokens_per_s == 80.0
    assert options.profile().prefill_tokens_per_s == 3000.0
    assert (options.time_scale, options.seed, options.crash_after) == (0.0, 3, 7)
    assert (options.error_rate, options.stall_rate, options.stall_s) == (0.1, 0.2, 1.5)
    assert (options.slow_start_s, options.malformed_rate) == (2.0, 0.3)
    assert options.legacy_metric_names and options.api_key == "secret"


def test_vllm_gpu_flags_are_accepted_and_reported_as_ignored():
    _, ignored, _ = parse_args([
        "m-8b", "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.9",
        "--quantization", "awq", "--enable-prefix-caching", "--dtype", "bfloat16",
        "--disable-log-requests", "--disable-log-stats", "--trust-remote-code",
        "--max-num-batched-tokens", "8192", "--download-dir", "models",
        "--generation-config", "vllm",
    ])  # fmt: skip
    assert set(ignored) == {
        "--tensor-parallel-size", "--gpu-memory-utilization", "--quantization",
        "--enable-prefix-caching", "--dtype", "--disable-log-requests", "--disable-log-stats",
        "--trust-remote-code", "--max-num-batched-tokens", "--download-dir",
        "--generation-config",
    }  # fmt: skip
    _, ignored, _ = parse_args(["m", "--no-enable-prefix-caching"])
    assert ignored == ["--enable-prefix-caching"]


def test_the_api_key_may_come_from_the_environment_as_with_vllm(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "from-env")
    assert parse_args(["m"])[0].api_key == "from-env"
    assert parse_args(["m", "--api-key", "flag"])[0].api_key == "flag"
    monkeypatch.setenv("VLLM_API_KEY", "")
    assert parse_args(["m"])[0].api_key is None


def test_an_unknown_model_name_gets_the_8b_defaults():
    assert parse_args(["default"])[0].size_class == "8B"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["a", "--model", "b"],
        ["m", "--time-scale", "-1"],
        ["m", "--time-scale", "nan"],
        ["m", "--error-rate", "1.5"],
        ["m", "--port", "70000"],
        ["m", "--max-num-seqs", "0"],
        ["m", "--decode-tokens-per-s", "0"],
        ["m", "--size-class", "13B"],
        ["m", "--crash-after", "x"],
        ["m", "--no-such-flag"],
    ],
)
def test_bad_flags_end_with_an_argparse_error_and_status_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err
