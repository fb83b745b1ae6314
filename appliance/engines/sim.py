"""`kind = "sim"`: the appliance's own vLLM-compatible simulator, launched like a vLLM engine.

The simulator's latency follows the model's size class (from the catalog, else guessed from the
name, else 8B). The internal API key travels in `VLLM_API_KEY`, as vLLM reads it, so it never
shows in the process list.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.engines.base import LOOPBACK, LaunchSpec, engine_port, loopback_endpoint
from appliance.simulator.latency import DEFAULT_SIZE_CLASS, size_class_of

HOST = LOOPBACK
BASE_STARTUP_TIMEOUT_S = 30.0


# Where the gateway reaches it: loopback, behind the appliance's internal key.
endpoint = loopback_endpoint


def launch_spec(
    engine: EngineConfig, api_key: str, catalog: Mapping[str, CatalogEntry]
) -> LaunchSpec:
    port = engine_port(engine)
    sim = engine.sim
    argv = [
        sys.executable, "-m", "appliance.simulator",
        "--model", engine.model,
        "--served-model-name", *engine.names,
        "--host", HOST,
        "--port", str(port),
        "--max-num-seqs", str(engine.max_num_seqs),
        "--max-model-len", str(engine.max_model_len),
        "--size-class", size_class(engine, catalog),
        "--batch-slowdown", repr(sim.batch_slowdown),
        "--time-scale", repr(sim.time_scale),
        "--seed", str(sim.seed),
    ]  # fmt: skip
    optional: list[tuple[str, object]] = [
        ("--decode-tokens-per-s", sim.decode_tokens_per_s),
        ("--prefill-tokens-per-s", sim.prefill_tokens_per_s),
        ("--kv-cache-tokens", sim.kv_cache_tokens),
        ("--error-rate", sim.error_rate),
        ("--stall-rate", sim.stall_rate),
        ("--crash-after", sim.crash_after),
        ("--slow-start-s", sim.slow_start_s),
        ("--malformed-rate", sim.malformed_rate),
    ]
    for flag, value in optional:
        if value:
            argv += [flag, repr(value)]
    if sim.stall_rate:
        argv += ["--stall-s", repr(sim.stall_s)]
    if sim.legacy_metric_names:
        argv.append("--legacy-metric-names")
    return LaunchSpec(
        engine_id=engine.id,
        argv=tuple(argv),
        env={"VLLM_API_KEY": api_key, "PYTHONUNBUFFERED": "1"},
        health_url=f"http://{HOST}:{port}/health",
        startup_timeout_s=engine.startup_timeout_s or BASE_STARTUP_TIMEOUT_S + sim.slow_start_s,
    )


def size_class(engine: EngineConfig, catalog: Mapping[str, CatalogEntry]) -> str:
    """The simulator's size class: the catalog's, else one read from the model's name, else 8B."""
    entry = catalog.get(engine.model)
    for name in (entry.size_class if entry else None, engine.model, engine.name):
        found = size_class_of(name) if name else None
        if found:
            return found
    return DEFAULT_SIZE_CLASS
