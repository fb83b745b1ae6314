"""What the planner answers: per engine, per GPU, and what to change when it does not fit.

Plain frozen structs, so `appliance plan --json` is `msgspec.json.encode(plan)` and `appliance
serve` hands each engine's entry to its launcher.
"""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from appliance.config.schema import EngineConfig
from appliance.placement.gpus import Gpu

Verdict = Literal["fits", "tight", "does not fit"]


class EnginePlan(Struct, frozen=True, kw_only=True):
    """One vLLM engine: where it runs, what its memory holds, how many sequences it can serve.

    Byte figures ending in `_per_gpu` are for each of the engine's GPUs (tensor parallel splits
    weights and KV heads); `kv_cache_tokens` is what vLLM would report as its KV cache size.
    """

    engine_id: str
    served_name: str
    model: str
    figures_from: str
    params_b: float
    gpus: tuple[int, ...]
    gpus_chosen_by_planner: bool
    tensor_parallel_size: int
    weight_format: str
    weight_bytes: int
    weight_bytes_per_gpu: int
    kv_bytes_per_token: int
    kv_bytes_per_token_per_gpu: int
    runtime_bytes_per_gpu: int
    cuda_graph_bytes_per_gpu: int
    activation_bytes_per_gpu: int
    batch_tokens: int
    gpu_memory_utilization: float
    fraction_given: bool
    budget_bytes_per_gpu: int
    kv_cache_bytes_per_gpu: int
    kv_cache_tokens: int
    max_model_len: int
    max_num_seqs: int
    full_length_seqs: int
    verdict: Verdict
    problems: tuple[str, ...] = ()
    # CUDA_VISIBLE_DEVICES for it: the GPU indices, or MIG UUIDs where it runs on a MIG instance.
    cuda_devices: tuple[str, ...] = ()
    # "cpu": planned on host memory for vLLM's CPU build (`gpus` is then empty).
    device: Literal["gpu", "cpu"] = "gpu"

    @property
    def overhead_bytes_per_gpu(self) -> int:
        return (
            self.runtime_bytes_per_gpu
            + self.cuda_graph_bytes_per_gpu
            + (self.activation_bytes_per_gpu)
        )


class GpuUse(Struct, frozen=True, kw_only=True):
    """One GPU: the fractions given to the engines on it, against what it can take."""

    index: int
    name: str
    total_bytes: int
    usable_bytes: int
    free_bytes: int
    limit_fraction: float
    fractions: dict[str, float]
    used_fraction: float


class Suggestion(Struct, frozen=True, kw_only=True):
    """A set of changes, checked by planning again with them applied."""

    changes: tuple[str, ...]
    fits: bool
    result: str  # what the re-run plan says, in one line
    cost: float  # lower is a smaller sacrifice; used for ranking
    shortfall_bytes: int = 0
    # The profile's engines with the changes applied.
    engines: tuple[EngineConfig, ...] = ()


class Plan(Struct, frozen=True, kw_only=True):
    profile: str
    gpu_source: Literal["nvml", "declared", "what-if", "none", "host"]
    gpus_note: str
    gpus: tuple[Gpu, ...]
    engines: tuple[EnginePlan, ...]
    gpu_use: tuple[GpuUse, ...]
    not_placed: tuple[str, ...]  # engines that use no GPU here (sim, external)
    problems: tuple[str, ...]
    feasible: bool
    shortfall_bytes: int  # how far from fitting: 0 when every engine has its minimum
    suggestions: tuple[Suggestion, ...] = ()

    def engine(self, engine_id: str) -> EnginePlan | None:
        return next((e for e in self.engines if e.engine_id == engine_id), None)
