"""extra_args may not set what the appliance owns, in any spelling vLLM accepts.

The static guard: it needs no vLLM. Where vLLM is installed its own parser also reads the whole
command line (`vllm_parser.py`), and `owned_dests` names the owned settings in its words.
"""

from __future__ import annotations

from appliance.config.schema import EngineConfig
from appliance.errors import ConfigError

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


def check_extra_args(engine: EngineConfig) -> None:
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


def owned_dests() -> set[str]:
    return {flag[2:].replace("-", "_") for flag in OWNED_FLAGS} | {"config"}
