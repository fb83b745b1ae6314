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
- extra_args may not set what the appliance owns, in any spelling vLLM accepts; where vLLM is
  installed its own parser also checks the whole command line before anything is launched.
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

import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from appliance.config.schema import EngineConfig
from appliance.engines.base import LOOPBACK, LaunchSpec, engine_port, loopback_endpoint
from appliance.errors import ConfigError
from appliance.placement.figures import is_local_model

log = logging.getLogger(__name__)
HOST = LOOPBACK
# Loading a 70B checkpoint from disk, compiling and capturing CUDA graphs takes many minutes.
DEFAULT_STARTUP_TIMEOUT_S = 1800.0
DEFAULT_GPU_MEMORY_UTILIZATION = 0.92  # vLLM's own default, used when there is no plan
# Flags the appliance sets itself; extra_args may not override them (argparse keeps the last).
OWNED_FLAGS = {
    "--host": "the appliance binds engines to 127.0.0.1",
    "--port": "set `port`",
    "--api-key": "the appliance sets the internal key",
    "--served-model-name": "set `served_name` and `aliases`",
    "--tensor-parallel-size": "set `tensor_parallel_size`",
    "--gpu-memory-utilization": "set `gpu_memory_utilization` (or let the planner choose)",
    "--max-model-len": "set `max_model_len`",
    "--max-num-seqs": "set `max_num_seqs`",
    "--quantization": "set `quantization`",
    "--dtype": "set `dtype`",
    "--max-log-len": "prompts must not reach the logs",
    "--enable-log-requests": "prompts must not reach the logs",
    "--enable-log-outputs": "model output must not reach the logs",
    "--enable-prefix-caching": "set `enable_prefix_caching`",
    "--model": "set `model`",
    "--uds": "the appliance reaches engines over loopback TCP",
}
# vLLM's short aliases for owned flags (argparse also accepts them as `-tp=2` and `-tp2`).
OWNED_ALIASES = {"-tp": "--tensor-parallel-size", "-q": "--quantization"}
# Flags that could set anything: a YAML file of flags escapes every check made here.
REFUSED_FLAGS = {
    "--config": "put the flags themselves in extra_args, where they are checked",
}
# Quantizations vLLM applies while loading; the others come with the checkpoint.
QUANTIZE_ON_LOAD = ("fp8", "bitsandbytes")
# Words in a hub id that say its weights are already quantized (see _hub_id_quantized).
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
    _check_extra_args(engine)
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
    owned = _owned_dests() & set(verdict.extra_dests)
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


def _check_extra_args(engine: EngineConfig) -> None:
    """Refuse owned flags in every spelling argparse and vLLM accept, without vLLM installed.

    vLLM turns `_` into `-` in flag names, reads `--flag=value` and `--flag.key value`, and its
    parser takes any unambiguous prefix (`--enable-log-req`) and short aliases (`-tp`, `-q`,
    written `-tp2` or `-q=fp8` too). `--config FILE` could set anything, so it is refused.
    """
    for arg in engine.extra_args:
        reason = _owned_reason(arg)
        if reason is not None:
            flag, why = reason
            raise ConfigError(
                "models.toml",
                f"engines.{engine.id}.extra_args",
                f"no {flag} in any spelling ({why})",
                got=repr(arg),
            )


def _owned_reason(arg: str) -> tuple[str, str] | None:
    if not arg.startswith("-") or arg == "-" or arg[1:2].isdigit() or arg[1:2] == ".":
        return None  # a value (negative numbers included)
    if not arg.startswith("--"):
        head = arg.split("=", 1)[0]
        for alias, flag in OWNED_ALIASES.items():
            if head.startswith(alias) or alias.startswith(head):
                return flag, OWNED_FLAGS[flag]
        return None
    name = arg[2:].split("=", 1)[0].split(".", 1)[0].replace("_", "-")
    if not name:
        return None  # `--` ends the options; vLLM then refuses a second model
    flag = "--" + name
    for refused, why in REFUSED_FLAGS.items():
        if refused.startswith(flag) and len(name) >= 2:
            return refused, why
    for owned, why in OWNED_FLAGS.items():
        negated = "--no-" + owned[2:]
        if owned.startswith(flag) or negated.startswith(flag):
            return owned, why
    return None


def _owned_dests() -> set[str]:
    return {flag[2:].replace("-", "_") for flag in OWNED_FLAGS} | {"config"}


@dataclass(frozen=True)
class ParseVerdict:
    """What vLLM's own parser said of a command line."""

    error: str = ""  # argparse's message when it refused the command line
    extra_dests: tuple[str, ...] = ()  # settings extra_args changed, in vLLM's own names
    version: str = ""  # empty when vLLM's parser could not be run
    bnb_plugin: bool = False  # vLLM's bitsandbytes plugin is importable beside it


@dataclass(frozen=True)
class VllmParser:
    """vLLM's `serve` argument parser, run in the Python that vLLM is installed in.

    A subprocess, because vLLM usually lives in its own environment (and importing it takes
    seconds and a lot of memory the appliance should not keep).
    """

    python: str
    version: str = "(installed)"
    timeout_s: float = 180.0

    @staticmethod
    def find() -> VllmParser | None:
        """The Python beside the `vllm` command (its `#!` line), else this one if it has vLLM."""
        exe = shutil.which("vllm")
        if exe is None:
            beside = Path(sys.executable).with_name("vllm")
            exe = str(beside) if beside.is_file() else None
        if exe is not None:
            python = _shebang_python(exe)
            if python is not None:
                return VllmParser(python)
        if importlib.util.find_spec("vllm") is not None:
            return VllmParser(sys.executable)
        return None

    def parse(self, model: str, flags: Sequence[str], extra: Sequence[str]) -> ParseVerdict:
        return _run_parser(self.python, model, tuple(flags), tuple(extra), self.timeout_s)


def _shebang_python(exe: str) -> str | None:
    try:
        with open(exe, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    python = words[-1] if Path(words[0]).name == "env" else words[0]
    if "python" not in Path(python).name:
        return None
    return shutil.which(python) or (python if os.access(python, os.X_OK) else None)


@functools.lru_cache(maxsize=64)
def _run_parser(
    python: str, model: str, flags: tuple[str, ...], extra: tuple[str, ...], timeout_s: float
) -> ParseVerdict:
    request = json.dumps({"model": model, "flags": flags, "extra": extra})
    try:
        done = subprocess.run(
            [python, "-c", _PARSER_SCRIPT],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning(
            "vLLM's argument parser could not be run (%s); extra_args checked by the "
            "appliance's own guard only",
            type(exc).__name__,
        )
        return ParseVerdict()
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning(
            "vLLM's argument parser could not be loaded (%s); extra_args checked by the "
            "appliance's own guard only",
            tail[:300],
        )
        return ParseVerdict()
    answer = json.loads(lines[-1])
    return ParseVerdict(
        error=str(answer.get("error", "")),
        extra_dests=tuple(answer.get("extra_dests", ())),
        version=str(answer.get("version", "")),
        bnb_plugin=bool(answer.get("bnb_plugin", False)),
    )


# Runs in vLLM's Python: parses the full command line (errors), then extra_args alone against a
# namespace of sentinels, so every setting they touch shows, whatever spelling set it.
_PARSER_SCRIPT = r"""
import argparse, contextlib, io, json, os, sys
from importlib import metadata
# Building the parser needs no vision packages; a mismatched CUDA build of them must not stop it.
for name in ("torchvision", "torchaudio", "torchcodec"):
    sys.modules.setdefault(name, None)
def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
version = installed("vllm") or installed("vllm-cpu") or "unknown"
if installed("vllm") is None and installed("vllm-cpu"):
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    real_version = metadata.version
    metadata.version = lambda n: real_version("vllm-cpu" if n == "vllm" else n)
request = json.loads(sys.stdin.read())
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
def parser():
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
def attempt(args, namespace=None):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser().parse_args(args, namespace), ""
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        return None, (lines[-1] if lines else "refused")
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
_, error = attempt([request["model"], *request["flags"], *request["extra"]])
dests = []
if not error:
    unset = object()
    probe = parser()
    namespace = argparse.Namespace(**{a.dest: unset for a in probe._actions if a.dest != "help"})
    parsed, error = attempt([request["model"], *request["extra"]], namespace)
    if parsed is not None:
        dests = [k for k, v in vars(parsed).items() if v is not unset and k != "model_tag"]
import importlib.util
bnb = importlib.util.find_spec("vllm_bnb_plugin") is not None
print(json.dumps({"error": error, "extra_dests": dests, "version": version, "bnb_plugin": bnb}))
"""
