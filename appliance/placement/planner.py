"""Place vLLM engines on GPUs: assign GPUs, choose memory fractions, size each KV cache.

Pure and fast: no I/O beyond reading a local model's config.json, so the suggestion search can
run it hundreds of times. Engines that list `gpus` keep them; the others go, largest first, to the
GPUs with the most room, a model's replicas to GPUs its other replicas do not use where there are
any. Engines without a `gpu_memory_utilization` share what the given ones leave
on each GPU in proportion to what they want (weights, overhead and a full KV cache of
`max_num_seqs` full-length sequences), at most vLLM's default 0.92 each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.placement import memory
from appliance.placement.figures import ModelFigures, WeightFormat, model_figures
from appliance.placement.gpus import GIB, Gpu
from appliance.placement.plan import EnginePlan, GpuUse, Plan, Verdict

# Added to the shortfall for each problem that no amount of memory fixes, so the suggestion
# search fixes those first.
STRUCTURAL_SHORTFALL = 1 << 50
GpuSource = Literal["nvml", "declared", "what-if", "none"]


@dataclass(eq=False)
class _Engine:
    """An engine with its model's memory figures worked out (per GPU figures cached)."""

    config: EngineConfig
    figures: ModelFigures
    fmt: WeightFormat
    weights: int
    problems: list[str] = field(default_factory=list)
    _overheads: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.id = self.config.id
        self.tp = self.config.tensor_parallel_size
        self.weights_per_gpu = math.ceil(self.weights / self.tp)
        self.kv_dtype = memory.kv_dtype_bytes(self.config)
        self.kv_per_gpu = memory.kv_bytes_per_token(self.figures, self.tp, self.kv_dtype)

    def overhead(self, gpu: Gpu) -> tuple[int, int, int, int]:
        """(runtime, CUDA graphs, activation, batch tokens) on one of its GPUs."""
        cached = self._overheads.get(gpu.index)
        if cached is None:
            tokens = memory.batch_tokens(self.config, gpu)
            act = memory.activation_bytes(self.figures, self.config, self.tp, tokens)
            cached = (memory.runtime_bytes(self.tp), memory.CUDA_GRAPH_BYTES, act, tokens)
            self._overheads[gpu.index] = cached
        return cached

    def fixed_bytes(self, gpu: Gpu) -> int:
        runtime, graphs, act, _ = self.overhead(gpu)
        return self.weights_per_gpu + runtime + graphs + act

    def min_bytes(self, gpu: Gpu) -> int:
        """The least it can start with: one full-length sequence of KV cache."""
        return self.fixed_bytes(gpu) + self.kv_per_gpu * self.config.max_model_len

    def want_bytes(self, gpu: Gpu) -> int:
        """Enough KV cache for `max_num_seqs` full-length sequences at once."""
        seqs = self.config.max_num_seqs * self.config.max_model_len
        return self.fixed_bytes(gpu) + self.kv_per_gpu * seqs


def plan_engines(
    engines: Sequence[EngineConfig],
    gpus: Sequence[Gpu],
    catalog: dict[str, CatalogEntry],
    *,
    profile: str = "",
    source: str = "models.toml",
    gpu_source: GpuSource = "declared",
    gpus_note: str = "",
    hypothetical: bool = False,
    figures_cache: dict[tuple[str, str], ModelFigures] | None = None,
) -> Plan:
    """The plan for `engines` on `gpus`. `hypothetical` skips checks against checkpoints on disk
    (used when trying suggested changes such as another quantization); `figures_cache` spares
    re-reading model configs when planning many variants."""
    gpus = list(gpus)
    launched = [e for e in engines if e.kind == "vllm"]
    others = tuple(e.id for e in engines if e.kind != "vllm")
    cache = figures_cache if figures_cache is not None else {}
    prepared = [_prepare(e, catalog, source, len(gpus), hypothetical, cache) for e in launched]
    problems: list[str] = []
    if prepared and not gpus:
        problems.append(
            "no GPUs to place the vLLM engines on: run on a GPU host, or plan for declared "
            "hardware with --gpus (e.g. 2xA100-40GB) or the profile's `gpus`"
        )
    assignment = _assign(prepared, gpus)
    fractions = _fractions(prepared, assignment, gpus)
    by_index = {g.index: g for g in gpus}
    tenants = {i: [e.id for e in prepared if i in assignment[e.id][0]] for i in by_index}
    plans = tuple(
        _finish(e, assignment[e.id], fractions[e.id], by_index, tenants) for e in prepared
    )
    uses = tuple(_gpu_use(g, plans) for g in gpus)
    for use in uses:
        if use.used_fraction > use.limit_fraction + 1e-9:
            problems.append(_over_gpu(use, by_index[use.index]))
    shortfall = _shortfall(prepared, plans, assignment, by_index) + (
        STRUCTURAL_SHORTFALL * len(problems)
    )
    feasible = not problems and all(p.verdict != "does not fit" for p in plans)
    return Plan(
        profile=profile,
        gpu_source=gpu_source if gpus else "none",
        gpus_note=gpus_note,
        gpus=tuple(gpus),
        engines=plans,
        gpu_use=uses,
        not_placed=others,
        problems=tuple(problems),
        feasible=feasible,
        shortfall_bytes=0 if feasible else max(shortfall, 1),
    )


def _prepare(
    engine: EngineConfig,
    catalog: dict[str, CatalogEntry],
    source: str,
    gpu_count: int,
    hypothetical: bool,
    cache: dict[tuple[str, str], ModelFigures],
) -> _Engine:
    key = (engine.model, engine.name)
    figures = cache.get(key)
    if figures is None:
        figures = cache[key] = model_figures(engine, catalog, source)
    fmt, conflict = memory.weight_format(engine, figures)
    prepared = _Engine(engine, figures, fmt, memory.weight_bytes(figures, fmt))
    if conflict and not hypothetical:
        prepared.problems.append(conflict)
    tp = engine.tensor_parallel_size
    if figures.attention_heads % tp:
        prepared.problems.append(
            f"tensor_parallel_size {tp} does not divide the model's "
            f"{figures.attention_heads} attention heads"
        )
    if tp > gpu_count and gpu_count:
        prepared.problems.append(
            f"tensor_parallel_size {tp} needs {tp} GPUs; there are {gpu_count}"
        )
    if engine.max_model_len > figures.max_position_embeddings:
        prepared.problems.append(
            f"max_model_len {engine.max_model_len} is above the model's limit of "
            f"{figures.max_position_embeddings} tokens"
        )
    return prepared


def _assign(engines: list[_Engine], gpus: list[Gpu]) -> dict[str, tuple[tuple[int, ...], bool]]:
    """GPU indices per engine, and whether the planner chose them."""
    by_index = {g.index: g for g in gpus}
    load = dict.fromkeys(by_index, 0)
    result: dict[str, tuple[tuple[int, ...], bool]] = {}
    for engine in engines:
        pinned = engine.config.gpus
        if pinned is None:
            continue
        valid = tuple(i for i in dict.fromkeys(pinned) if i in by_index)
        missing = [i for i in pinned if i not in by_index]
        if missing and gpus:
            have = ", ".join(str(i) for i in by_index)
            engine.problems.append(
                f"`gpus` names GPU {missing[0]}, not on this host (GPUs: {have})"
            )
        if len(set(pinned)) != len(pinned):
            engine.problems.append("`gpus` lists a GPU twice")
        if len(pinned) != engine.tp:
            engine.problems.append(
                f"`gpus` lists {len(pinned)} GPU(s) but tensor_parallel_size is {engine.tp}"
            )
        result[engine.id] = (valid, False)
        for i in valid:
            load[i] += engine.min_bytes(by_index[i])
    largest = max(gpus, key=memory.usable_bytes) if gpus else None
    unpinned = [e for e in engines if e.config.gpus is None]
    if largest is not None:
        unpinned.sort(key=lambda e: -e.min_bytes(largest))
    for engine in unpinned:
        if engine.tp > len(gpus):
            result[engine.id] = ((), True)
            continue
        room = {
            g.index: memory.limit_fraction(g) * memory.usable_bytes(g) - load[g.index] for g in gpus
        }
        # Replicas of one model go to GPUs (or tensor-parallel groups) of their own where they can:
        # two replicas on one GPU share its compute and add little.
        siblings = {
            i
            for other in engines
            if other is not engine and other.config.name == engine.config.name
            for i in result.get(other.id, ((), False))[0]
        }
        chosen = sorted(gpus, key=lambda g: (g.index in siblings, -room[g.index], g.index))[
            : engine.tp
        ]
        indices = tuple(sorted(g.index for g in chosen))
        result[engine.id] = (indices, True)
        for i in indices:
            load[i] += engine.min_bytes(by_index[i])
    return result


def _fractions(
    engines: list[_Engine],
    assignment: dict[str, tuple[tuple[int, ...], bool]],
    gpus: list[Gpu],
) -> dict[str, float]:
    """Given fractions stay. The others first get their minimum on each GPU, then what is left
    in proportion to the KV cache they still want; the most constrained engine is settled first
    and the rest share what it leaves."""
    by_index = {g.index: g for g in gpus}
    decided: dict[str, float] = {
        e.id: e.config.gpu_memory_utilization
        for e in engines
        if e.config.gpu_memory_utilization is not None
    }
    for engine in engines:
        if engine.id not in decided and not assignment[engine.id][0]:
            decided[engine.id] = 0.0
    undecided = [e for e in engines if e.id not in decided]
    on_gpu = {i: [e for e in engines if i in assignment[e.id][0]] for i in by_index}
    limits = {i: memory.limit_fraction(g) for i, g in by_index.items()}
    while undecided:
        shares = {}
        for engine in undecided:
            share = _ceiling(engine, [by_index[i] for i in assignment[engine.id][0]])
            for i in assignment[engine.id][0]:
                taken = sum(decided.get(x.id, 0.0) for x in on_gpu[i])
                room = max(limits[i] - taken, 0.0)
                open_here = [x for x in on_gpu[i] if x.id not in decided]
                share = min(share, _share(engine, open_here, room, by_index[i]))
            shares[engine.id] = share
        tightest = min(undecided, key=lambda e: shares[e.id])
        decided[tightest.id] = memory.floor_fraction(shares[tightest.id])
        undecided.remove(tightest)
    return decided


def _ceiling(engine: _Engine, gpus: list[Gpu]) -> float:
    """vLLM's default 0.92, or more when the engine needs more to start (up to each GPU's limit,
    which the sharing below enforces)."""
    need = max(
        e_min / (memory.usable_bytes(g) or 1) for g in gpus for e_min in [engine.min_bytes(g)]
    )
    return max(memory.DEFAULT_FRACTION, math.ceil(need * 100) / 100)


def _share(engine: _Engine, sharing: list[_Engine], room: float, gpu: Gpu) -> float:
    """`engine`'s part of `room` on `gpu`, split with the other undecided engines there."""
    usable = memory.usable_bytes(gpu) or 1
    mins = {x.id: x.min_bytes(gpu) / usable for x in sharing}
    extras = {x.id: max(x.want_bytes(gpu) / usable - mins[x.id], 0.0) for x in sharing}
    need = sum(mins.values())
    if need >= room:
        return room * mins[engine.id] / need if need else 0.0
    wanted = sum(extras.values())
    part = extras[engine.id] / wanted if wanted else 1 / len(sharing)
    return mins[engine.id] + (room - need) * part


def _finish(
    engine: _Engine,
    placed: tuple[tuple[int, ...], bool],
    fraction: float,
    by_index: dict[int, Gpu],
    tenants: dict[int, list[str]],
) -> EnginePlan:
    indices, chosen = placed
    cfg = engine.config
    worst: tuple[int, int, tuple[int, int, int, int]] | None = None  # (kv, budget, overhead)
    for i in indices:
        gpu = by_index[i]
        budget = int(fraction * memory.usable_bytes(gpu))
        overhead = engine.overhead(gpu)
        kv = budget - engine.weights_per_gpu - sum(overhead[:3])
        if worst is None or kv < worst[0]:
            worst = (kv, budget, overhead)
    kv_bytes, budget, (runtime, graphs, act, tokens) = worst or (0, 0, (0, 0, 0, 0))
    kv_tokens = memory.kv_tokens(kv_bytes, engine.kv_per_gpu)
    full = kv_tokens // cfg.max_model_len
    problems = list(engine.problems)
    if indices and kv_bytes <= 0:
        others = sorted({t for i in indices for t in tenants[i] if t != engine.id})
        problems.append(_no_room(engine, fraction, budget, [by_index[i] for i in indices], others))
    elif len(indices) > 1 and any(by_index[i].mig for i in indices):
        problems.append(
            f"tensor_parallel_size {engine.tp} over MIG instances: CUDA gives a process one MIG "
            "instance, so an engine on MIG runs with tensor_parallel_size = 1"
        )
    elif indices and full < 1:
        problems.append(
            f"its KV cache would hold {kv_tokens:,} tokens, less than one sequence of "
            f"max_model_len {cfg.max_model_len:,} (vLLM refuses to start)"
        )
    verdict: Verdict = "fits"
    if problems or not indices:
        verdict = "does not fit"
    elif full < cfg.max_num_seqs:
        verdict = "tight"
    return EnginePlan(
        engine_id=cfg.id,
        served_name=cfg.name,
        model=cfg.model,
        figures_from=engine.figures.source,
        params_b=round(engine.figures.params / 1e9, 2),
        gpus=indices,
        gpus_chosen_by_planner=chosen,
        tensor_parallel_size=engine.tp,
        weight_format=engine.fmt.name,
        weight_bytes=engine.weights,
        weight_bytes_per_gpu=engine.weights_per_gpu,
        kv_bytes_per_token=memory.kv_bytes_per_token(engine.figures, 1, engine.kv_dtype),
        kv_bytes_per_token_per_gpu=engine.kv_per_gpu,
        runtime_bytes_per_gpu=runtime,
        cuda_graph_bytes_per_gpu=graphs,
        activation_bytes_per_gpu=act,
        batch_tokens=tokens,
        gpu_memory_utilization=fraction,
        fraction_given=cfg.gpu_memory_utilization is not None,
        budget_bytes_per_gpu=budget,
        kv_cache_bytes_per_gpu=max(kv_bytes, 0),
        kv_cache_tokens=kv_tokens,
        max_model_len=cfg.max_model_len,
        max_num_seqs=cfg.max_num_seqs,
        full_length_seqs=full,
        verdict=verdict,
        problems=tuple(problems),
        cuda_devices=tuple(by_index[i].cuda_name for i in indices),
    )


def _no_room(
    engine: _Engine, fraction: float, budget: int, gpus: list[Gpu], others: list[str]
) -> str:
    """Weights and overhead beyond its budget: against the whole GPU when even that is short."""
    gpu = min(gpus, key=lambda g: memory.limit_fraction(g) * memory.usable_bytes(g))
    fixed = engine.fixed_bytes(gpu)
    whole = int(memory.limit_fraction(gpu) * memory.usable_bytes(gpu))
    needs = (
        f"{_gib(engine.weights_per_gpu)} of weights + {_gib(fixed - engine.weights_per_gpu)} of "
        "runtime, CUDA graphs and activations per GPU"
    )
    if fixed > whole:
        return (
            f"{needs} exceed even a whole {gpu.name} "
            f"({_gib(whole)} at {memory.limit_fraction(gpu):.2f})"
        )
    shared = f", shared with {', '.join(others)}" if others else ""
    return f"{needs} exceed its budget of {_gib(budget)} ({fraction:.2f} of the GPU{shared})"


def _gpu_use(gpu: Gpu, plans: tuple[EnginePlan, ...]) -> GpuUse:
    fractions = {p.engine_id: p.gpu_memory_utilization for p in plans if gpu.index in p.gpus}
    return GpuUse(
        index=gpu.index,
        name=gpu.name,
        total_bytes=gpu.total,
        usable_bytes=memory.usable_bytes(gpu),
        free_bytes=gpu.free,
        limit_fraction=round(memory.limit_fraction(gpu), 4),
        fractions=fractions,
        used_fraction=round(sum(fractions.values()), 4),
    )


def _over_gpu(use: GpuUse, gpu: Gpu) -> str:
    parts = ", ".join(f"{engine} {f:.2f}" for engine, f in use.fractions.items())
    held = gpu.total - gpu.free
    why = f"; other processes hold {_gib(held)}" if held > 0 else ""
    return (
        f"GPU {use.index} ({use.name}): gpu_memory_utilization adds up to "
        f"{use.used_fraction:.2f} ({parts}); at most {use.limit_fraction:.2f} fits{why}"
    )


def _shortfall(
    engines: list[_Engine],
    plans: tuple[EnginePlan, ...],
    assignment: dict[str, tuple[tuple[int, ...], bool]],
    by_index: dict[int, Gpu],
) -> int:
    """Bytes missing for every engine to have its minimum, per GPU and per engine budget."""
    total = 0
    for index, gpu in by_index.items():
        need = sum(e.min_bytes(gpu) for e in engines if index in assignment[e.id][0])
        total += max(0, need - int(memory.limit_fraction(gpu) * memory.usable_bytes(gpu)))
    for engine, plan in zip(engines, plans, strict=True):
        if not plan.gpus:
            total += STRUCTURAL_SHORTFALL
            continue
        gpu = by_index[plan.gpus[0]]
        total += max(0, engine.min_bytes(gpu) - plan.budget_bytes_per_gpu)
        total += STRUCTURAL_SHORTFALL * len(engine.problems)
    return total


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
