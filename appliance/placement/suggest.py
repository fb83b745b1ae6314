"""What to change when a plan does not fit, found by planning again with the change applied.

The candidate changes are the ones an operator has: quantize (FP8, or an AWQ 4-bit checkpoint),
raise tensor parallel, shorten max_model_len, let the planner size a fraction or choose the GPUs,
drop a model and let another serve its agents. A best-first search combines up to four of them,
cheapest sacrifice and smallest remaining shortfall first, and keeps the combinations that fit;
the answer ranks them by what they give up, then by the KV cache they leave.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import msgspec

from appliance.config.schema import CatalogEntry, EngineConfig
from appliance.placement.figures import ModelFigures
from appliance.placement.gpus import GIB, Gpu
from appliance.placement.plan import Plan, Suggestion
from appliance.placement.planner import plan_engines

MAX_CHANGES = 4
MAX_PLANS = 2000
MIN_MODEL_LEN = 2048
# A shorter max_model_len saves a sequence's worth of KV cache: the last inch, not the last mile.
SHORTEN_BELOW = 8 * GIB
# What each change gives up, roughly: quality first, then throughput and convenience.
COST_FP8 = 1.0
COST_AWQ = 2.0
COST_TP = 1.0
COST_LEN = 1.5
COST_FRACTION = 0.5
COST_UNPIN = 0.5
# Dropping a model costs more the larger it is next to the largest one kept.
COST_DROP = 3.0
COST_DROP_SIZE = 3.0
# A fix that leaves an engine room for fewer than four full-length sequences ranks lower: with one,
# it serves one long conversation at a time.
CROWDED_BELOW = 4
COST_CROWDED = 2.0
# The search looks at cheap changes first; the shortfall only breaks ties between them.
SHORTFALL_PER_COST = 64 * GIB

Engines = tuple[EngineConfig, ...]


@dataclass(frozen=True)
class Change:
    key: tuple[str, ...]
    text: str
    cost: float
    apply: Callable[[Engines], Engines]


@dataclass(order=True)
class _Node:
    priority: float
    order: int
    engines: Engines = ()
    changes: tuple[Change, ...] = ()
    plan: Plan | None = None

    @property
    def cost(self) -> float:
        return sum(c.cost for c in self.changes)


def suggest(
    engines: Sequence[EngineConfig],
    gpus: Sequence[Gpu],
    catalog: dict[str, CatalogEntry],
    *,
    source: str = "models.toml",
    limit: int = 3,
) -> tuple[Suggestion, ...]:
    """Up to `limit` sets of changes that make `engines` fit `gpus`, best first; when none is
    found, the nearest miss with what it still lacks."""
    cache: dict[tuple[str, str], ModelFigures] = {}
    gpus = list(gpus)

    def run(candidate: Engines) -> Plan:
        return plan_engines(
            candidate, gpus, catalog, source=source, hypothetical=True, figures_cache=cache
        )

    counter = itertools.count()
    start = tuple(engines)
    root = run(start)
    if root.feasible:
        return ()
    heap = [_Node(0.0, next(counter), start, (), root)]
    seen = {_signature(start)}
    found: list[tuple[_Node, Plan]] = []
    nearest: tuple[int, _Node, Plan] | None = None
    plans = 0
    best = float("inf")
    while heap and plans < MAX_PLANS:
        node = heapq.heappop(heap)
        if len(node.changes) >= MAX_CHANGES or node.cost >= best:
            continue
        taken = {c.key for c in node.changes}
        assert node.plan is not None
        for change in _changes(node.engines, len(gpus), node.plan, taken):
            if change.key in taken:
                continue
            candidate = change.apply(node.engines)
            signature = _signature(candidate)
            if signature in seen:
                continue
            seen.add(signature)
            plan = run(candidate)
            plans += 1
            child = _Node(0.0, next(counter), candidate, (*node.changes, change), plan)
            if plan.feasible:
                found.append((child, plan))
                best = min(best, child.cost + 2 * COST_FP8)  # keep near-cheapest ones too
                continue
            if nearest is None or plan.shortfall_bytes < nearest[0]:
                nearest = (plan.shortfall_bytes, child, plan)
            child.priority = child.cost + plan.shortfall_bytes / SHORTFALL_PER_COST
            heapq.heappush(heap, child)
    if found:
        return _ranked(found, limit)
    if nearest is None:
        return ()
    shortfall, node, plan = nearest
    return (
        Suggestion(
            changes=tuple(c.text for c in node.changes),
            fits=False,
            result=f"still does not fit: {_short(shortfall)}",
            cost=node.cost,
            shortfall_bytes=shortfall,
            engines=node.engines,
        ),
    )


def _ranked(found: list[tuple[_Node, Plan]], limit: int) -> tuple[Suggestion, ...]:
    """Cheapest first, then most KV headroom; a fix that contains another fix is left out."""
    keysets = [frozenset(c.key for c in node.changes) for node, _ in found]
    minimal = [
        (node, plan)
        for i, (node, plan) in enumerate(found)
        if not any(j != i and keysets[j] < keysets[i] for j in range(len(found)))
    ]
    minimal.sort(
        key=lambda item: (
            item[0].cost + _crowding(item[1]),
            -_headroom(item[1]),
            len(item[0].changes),
        )
    )
    return tuple(
        Suggestion(
            changes=tuple(c.text for c in node.changes),
            fits=True,
            result=_result(plan),
            cost=node.cost,
            engines=node.engines,
        )
        for node, plan in minimal[:limit]
    )


def _crowding(plan: Plan) -> float:
    """Extra cost for engines left with room for only a few full-length sequences."""
    short = (max(0, CROWDED_BELOW - e.full_length_seqs) for e in plan.engines)
    return sum(COST_CROWDED * n / (CROWDED_BELOW - 1) for n in short)


def _headroom(plan: Plan) -> float:
    """The worst engine's full-length sequences as a share of its max_num_seqs."""
    shares = [min(1.0, e.full_length_seqs / e.max_num_seqs) for e in plan.engines]
    return min(shares, default=1.0)


def _result(plan: Plan) -> str:
    parts = [
        f"{e.engine_id} {e.full_length_seqs} of {e.max_num_seqs} sequences x {e.max_model_len}"
        for e in plan.engines
    ]
    return "fits: " + ", ".join(parts)


def _short(shortfall: int) -> str:
    if shortfall >= 1 << 50:
        return "a problem no memory change fixes remains"
    return f"{shortfall / GIB:.1f} GiB short"


def _signature(engines: Engines) -> bytes:
    return msgspec.json.encode(engines)


def _changes(
    engines: Engines, gpu_count: int, plan: Plan, taken: set[tuple[str, ...]]
) -> Iterator[Change]:
    """Every single change worth trying from here (a changed engine is not then dropped)."""
    launched = [e for e in engines if e.kind == "vllm"]
    formats = {p.engine_id: p.weight_format for p in plan.engines}
    sizes = {p.engine_id: p.params_b for p in plan.engines}
    for engine in launched:
        yield from _quantize(engine, formats.get(engine.id, "16-bit"))
        yield from _parallel(engine, gpu_count)
        if plan.shortfall_bytes <= SHORTEN_BELOW:
            yield from _shorten(engine)
        if engine.gpu_memory_utilization is not None:
            yield Change(
                (engine.id, "fraction"),
                f"{engine.id}: remove gpu_memory_utilization = "
                f"{engine.gpu_memory_utilization:.2f} and let the planner size it",
                COST_FRACTION,
                _replace(engine.id, gpu_memory_utilization=None),
            )
        touched = {key[0] for key in taken} | {key[2] for key in taken if key[1] == "drop"}
        if len(launched) > 1 and engine.id not in touched:
            yield _drop(engine, launched, sizes)
    if any(e.gpus is not None for e in launched):
        yield Change(
            ("*", "unpin"),
            "let the planner choose the GPUs (remove `gpus` from the engines)",
            COST_UNPIN,
            lambda es: tuple(
                msgspec.structs.replace(e, gpus=None) if e.kind == "vllm" else e for e in es
            ),
        )


def _quantize(engine: EngineConfig, current: str) -> Iterator[Change]:
    name = engine.name
    if current == "16-bit":
        yield Change(
            (engine.id, "quantize"),
            f'{engine.id}: quantize to FP8 (quantization = "fp8"; vLLM converts the 16-bit '
            "weights as it loads them)",
            COST_FP8,
            _replace(engine.id, quantization="fp8"),
        )
    if current in ("16-bit", "fp8"):
        yield Change(
            (engine.id, "quantize"),
            f"{engine.id}: quantize to AWQ 4-bit (an AWQ checkpoint of {name}, quantization = "
            '"awq")',
            COST_AWQ if current == "16-bit" else COST_AWQ - COST_FP8,
            _replace(engine.id, quantization="awq"),
        )


def _parallel(engine: EngineConfig, gpu_count: int) -> Iterator[Change]:
    if engine.tensor_parallel_size > gpu_count >= 1:
        tp = 1 << (gpu_count.bit_length() - 1)
        yield Change(
            (engine.id, "tp"),
            f"{engine.id}: tensor_parallel_size = {tp} (there are only {gpu_count} GPUs)",
            COST_TP,
            _replace(engine.id, tensor_parallel_size=tp, gpus=None),
        )
    for tp in (2, 4, 8):
        if engine.tensor_parallel_size < tp <= gpu_count:
            yield Change(
                (engine.id, "tp"),
                f"{engine.id}: tensor_parallel_size = {tp} (split it over {tp} GPUs)",
                COST_TP,
                _replace(engine.id, tensor_parallel_size=tp, gpus=None),
            )


def _shorten(engine: EngineConfig) -> Iterator[Change]:
    if engine.max_model_len > MIN_MODEL_LEN:
        length = max(MIN_MODEL_LEN, engine.max_model_len // 2)
        yield Change(
            (engine.id, "len", str(length)),
            f"{engine.id}: max_model_len = {length}",
            COST_LEN,
            _replace(engine.id, max_model_len=length),
        )


def _drop(engine: EngineConfig, launched: list[EngineConfig], sizes: dict[str, float]) -> Change:
    """The agents of a dropped model go to the largest model left (the strongest answers)."""
    rest = [e for e in launched if e.id != engine.id]
    heir = max(rest, key=lambda e: (sizes.get(e.id, 0), e.id))
    largest = max(sizes.values(), default=0.0) or 1.0
    return Change(
        (engine.id, "drop", heir.id),
        f"drop {engine.id} ({engine.name}) and serve its agents from {heir.id} ({heir.name})",
        COST_DROP + COST_DROP_SIZE * sizes.get(engine.id, 0) / largest,
        lambda es: tuple(e for e in es if e.id != engine.id),
    )


def _replace(engine_id: str, **changes: object) -> Callable[[Engines], Engines]:
    def apply(engines: Engines) -> Engines:
        return tuple(
            msgspec.structs.replace(e, **changes) if e.id == engine_id else e for e in engines
        )

    return apply
