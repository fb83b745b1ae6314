"""vLLM's own `serve` parser checks extra_args, against the real vLLM of the real-vLLM stage: the
Python running these tests (or the one KAI_VLLM_PYTHON names)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from appliance.config.schema import EngineConfig
from appliance.engines import vllm, vllm_parser
from appliance.errors import ConfigError

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def parser() -> vllm_parser.VllmParser:
    python = os.environ.get("KAI_VLLM_PYTHON") or sys.executable
    assert Path(python).is_file(), f"KAI_VLLM_PYTHON={python} does not exist"
    vllm_parser._run_parser.cache_clear()
    return vllm_parser.VllmParser(python)


def engine(*extra: str, **overrides: object) -> EngineConfig:
    settings: dict[str, object] = {
        "id": "e", "kind": "vllm", "model": "org/model", "port": 8101, "extra_args": extra,
    }  # fmt: skip
    settings.update(overrides)
    return EngineConfig(**settings)  # type: ignore[arg-type]


def test_the_appliances_own_command_line_is_accepted(parser):
    verdict = parser.parse("org/model", vllm._flags(engine(), 8101, None), ())
    assert verdict.version.startswith("0.") and verdict.error == "", verdict


def test_an_unknown_flag_is_a_config_error_now(parser):
    with pytest.raises(ConfigError) as caught:
        vllm.check_engine(engine("--max-num-batched-tokenz", "4096"), parser)
    assert "unrecognized arguments: --max-num-batched-tokenz" in str(caught.value)


def test_a_flag_vllm_knows_passes_and_is_seen_by_its_name(parser):
    vllm.check_engine(engine("--max_num_batched_tokens=4096", "--enforce-eager"), parser)
    verdict = parser.parse("org/model", [], ("-O3", "--kv-cache-dtype", "fp8"))
    assert {"kv_cache_dtype"} <= set(verdict.extra_dests)


def test_every_owned_flag_maps_to_a_setting_of_the_real_parser(parser):
    verdict = parser.parse("org/model", [], ("--enable-log-req", "-tp", "2"))
    assert {"enable_log_requests", "tensor_parallel_size"} <= set(verdict.extra_dests)
