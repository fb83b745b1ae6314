"""Plan vLLM engines on host memory, for vLLM's CPU build (a profile with `gpus = "cpu"`).

On CPU, vLLM's `--gpu-memory-utilization` is a share of RAM that must be free when it starts, and
the KV cache is allocated up front; the appliance instead gives each engine an explicit KV cache
(`VLLM_CPU_KVCACHE_SPACE`, whole GiB), sized for `max_num_seqs` full-length sequences, and checks
that weights, runtime and caches of all engines fit in the memory available now.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import msgspec
import psutil

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.placement import memory
from appliance.placement.figures import model_figures
from appliance.placement.gpus import GIB, Gpu
from appliance.placement.plan import EnginePlan, Plan
from appliance.placement.planner import plan_engines

HOST_SPEC = "cpu"
# What one CPU engine holds besides weights and KV cache: the API server and EngineCore processes,
# each with torch loaded (about 2.8 GiB resident measured with a tiny model).
HOST_RUNTIME_BYTES = 3 * GIB
_UNBOUNDED = 1 << 50


def is_host_spec(declared: str) -> bool:
    return declared.strip().lower() == HOST_SPEC


def host_memory() -> Gpu:
    """The host's RAM as the one device engines are placed on; `free` is what is available now."""
    vm = psutil.virtual_memory()
    return Gpu(index=0, name="CPU host memory", total=vm.total, free=vm.available, source="host")


def kv_cache_gib(plan: EnginePlan) -> int:
    """`VLLM_CPU_KVCACHE_SPACE` for an engine planned on host memory."""
    return max(1, math.ceil(plan.kv_cache_bytes_per_gpu / GIB))


def plan_on_host(
    profile: str,
    engines: Sequence[EngineConfig],
    catalog: dict[str, CatalogEntry],
    *,
    host: Gpu | None = None,
    source: str = "models.toml",
) -> Plan:
    """The plan for `engines` on host memory (`host` replaces the reading in tests)."""
    device = host or host_memory()
    # Planned first on a device too large to run short, so only structural problems (a model's
    # figures, its quantization) come back; memory is checked below against the host.
    unbounded = msgspec.structs.replace(device, total=_UNBOUNDED, free=_UNBOUNDED)
    base = plan_engines(
        engines,
        [unbounded],
        catalog,
        profile=profile,
        source=source,
        gpus_note="host memory, vLLM's CPU build",
    )
    planned = [_on_host(e, p, device, catalog, source) for e, p in _pairs(engines, base)]
    needed = sum(p.budget_bytes_per_gpu for p in planned)
    problems = [*base.problems, *(p for e in planned for p in e.problems)]
    if needed > device.free:
        problems.append(
            f"the engines need {needed / GIB:.1f} GiB of host memory and "
            f"{device.free / GIB:.1f} GiB is available: lower max_num_seqs or max_model_len, "
            "or run fewer engines"
        )
    return msgspec.structs.replace(
        base,
        gpu_source="host",
        gpus=(device,),
        engines=tuple(planned),
        gpu_use=(),
        problems=tuple(problems),
        feasible=not problems,
        shortfall_bytes=max(needed - device.free, 0),
    )


def _pairs(engines: Sequence[EngineConfig], plan: Plan) -> list[tuple[EngineConfig, EnginePlan]]:
    by_id = {e.engine_id: e for e in plan.engines}
    return [(e, by_id[e.id]) for e in engines if e.id in by_id]


def _on_host(
    engine: EngineConfig,
    plan: EnginePlan,
    host: Gpu,
    catalog: dict[str, CatalogEntry],
    source: str,
) -> EnginePlan:
    figures = model_figures(engine, catalog, source)
    per_token = memory.kv_bytes_per_token(figures, 1)
    wanted = per_token * engine.max_num_seqs * engine.max_model_len
    kv_bytes = max(1, math.ceil(wanted / GIB)) * GIB
    kv_tokens = kv_bytes // per_token
    budget = plan.weight_bytes + HOST_RUNTIME_BYTES + plan.activation_bytes_per_gpu + kv_bytes
    problems = list(plan.problems)
    if engine.tensor_parallel_size != 1:
        problems.append(f"engine {engine.id}: tensor_parallel_size must be 1 on CPU")
    return msgspec.structs.replace(
        plan,
        gpus=(),
        cuda_devices=(),
        gpus_chosen_by_planner=False,
        runtime_bytes_per_gpu=HOST_RUNTIME_BYTES,
        cuda_graph_bytes_per_gpu=0,
        gpu_memory_utilization=min(math.ceil(100 * budget / max(host.total, 1)) / 100, 1.0),
        budget_bytes_per_gpu=budget,
        kv_cache_bytes_per_gpu=kv_bytes,
        kv_cache_tokens=kv_tokens,
        full_length_seqs=kv_tokens // engine.max_model_len,
        verdict="does not fit" if problems else "fits",
        problems=tuple(problems),
        device="cpu",
    )
