"""A plan for people: one table row per engine, each GPU's share, and why it does or does not fit.

Memory is shown in GiB (what vLLM and nvidia-smi report), KV cache per token in KiB.
"""

from __future__ import annotations

from appliance.placement.gpus import GIB, describe
from appliance.placement.plan import EnginePlan, Plan

KIB = 1 << 10
HEADERS = (
    "engine",
    "GPUs",
    "TP",
    "weights",
    "weights/GPU",
    "KV/token",
    "fraction",
    "KV tokens",
    "full-length seqs",
    "verdict",
)


def render_plan(plan: Plan) -> str:
    """The whole report: header, table, GPU shares, memory per engine, and what to change."""
    lines = [_title(plan), ""]
    if not plan.engines:
        lines.append("No vLLM engines in this profile: nothing to place on GPUs.")
        return "\n".join(lines)
    lines += _table(plan)
    lines.append("")
    lines += _gpu_lines(plan)
    lines.append("")
    lines += [_memory_line(e) for e in plan.engines]
    if plan.not_placed:
        lines.append(f"Not on GPUs here: {', '.join(plan.not_placed)} (sim or external engines).")
    lines.append("")
    if plan.feasible:
        lines.append(_fits_line(plan))
    else:
        lines.append(explain(plan))
    return "\n".join(lines)


def explain(plan: Plan) -> str:
    """Why the plan does not fit and what would, as refused by `appliance serve`."""
    head = f"Profile {plan.profile!r} does not fit {_where(plan)}:"
    lines = [head]
    lines += [f"  - {problem}" for problem in plan.problems]
    for engine in plan.engines:
        for problem in engine.problems:
            lines.append(f"  - {engine.engine_id} ({_model_short(engine)}): {problem}")
    fixes = [s for s in plan.suggestions if s.fits]
    if fixes:
        lines.append("Changes that fit (each checked by planning again with it applied):")
        for n, fix in enumerate(fixes, 1):
            lines.append(f"  {n}. " + "; ".join(fix.changes))
            lines.append(f"     -> {fix.result}")
    elif plan.suggestions:
        near = plan.suggestions[0]
        lines.append(
            "No combination of up to four changes fits. Nearest: " + "; ".join(near.changes)
        )
        lines.append(f"     -> {near.result}")
    return "\n".join(lines)


def _title(plan: Plan) -> str:
    note = f" ({plan.gpus_note})" if plan.gpus_note else ""
    return f"Plan for profile {plan.profile!r} on {_where(plan)}{note}"


def _where(plan: Plan) -> str:
    return describe(list(plan.gpus))


def _table(plan: Plan) -> list[str]:
    rows = [HEADERS, *(_row(e) for e in plan.engines)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _row(e: EnginePlan) -> tuple[str, ...]:
    return (
        e.engine_id,
        ",".join(str(i) for i in e.gpus) or ("cpu" if e.device == "cpu" else "-"),
        str(e.tensor_parallel_size),
        f"{e.weight_format} {gib(e.weight_bytes)}",
        gib(e.weight_bytes_per_gpu),
        f"{e.kv_bytes_per_token // KIB} KiB",
        f"{e.gpu_memory_utilization:.2f}" + ("" if e.fraction_given else "*"),
        f"{e.kv_cache_tokens:,}",
        f"{e.full_length_seqs} of {e.max_num_seqs} x {e.max_model_len}",
        e.verdict,
    )


def _gpu_lines(plan: Plan) -> list[str]:
    lines = []
    for use in plan.gpu_use:
        parts = ", ".join(f"{engine} {f:.2f}" for engine, f in use.fractions.items()) or "unused"
        held = use.total_bytes - use.free_bytes
        others = f"; other processes hold {gib(held)}" if held > 0 else ""
        lines.append(
            f"GPU {use.index} {use.name}: {use.used_fraction:.2f} of {gib(use.usable_bytes)} "
            f"({parts}); at most {use.limit_fraction:.2f}{others}"
        )
    if any(not e.fraction_given for e in plan.engines):
        lines.append("* fraction chosen by the planner (no gpu_memory_utilization given)")
    return lines


def _memory_line(e: EnginePlan) -> str:
    if e.device == "cpu":
        return (
            f"{e.engine_id}: host memory {gib(e.budget_bytes_per_gpu)} = weights "
            f"{gib(e.weight_bytes)} + runtime {gib(e.runtime_bytes_per_gpu)} + activations "
            f"{gib(e.activation_bytes_per_gpu)} + KV cache {gib(e.kv_cache_bytes_per_gpu)} "
            "(VLLM_CPU_KVCACHE_SPACE)"
        )
    if not e.gpus:
        return f"{e.engine_id}: not placed"
    parts = (
        f"weights {gib(e.weight_bytes_per_gpu)} + runtime {gib(e.runtime_bytes_per_gpu)} + "
        f"CUDA graphs {gib(e.cuda_graph_bytes_per_gpu)} + activations "
        f"{gib(e.activation_bytes_per_gpu)} ({e.batch_tokens} tokens)"
    )
    if e.kv_cache_bytes_per_gpu > 0:
        split = f"budget {gib(e.budget_bytes_per_gpu)} = {parts} + KV cache {gib(e.kv_cache_bytes_per_gpu)}"
    else:
        split = f"needs {parts}; budget {gib(e.budget_bytes_per_gpu)}"
    return f"{e.engine_id} per GPU: {split}; {e.params_b:g}B params from {e.figures_from}"


def _fits_line(plan: Plan) -> str:
    tight = [e for e in plan.engines if e.verdict == "tight"]
    if not tight:
        return "Fits: every engine's KV cache holds max_num_seqs sequences of max_model_len tokens."
    names = ", ".join(f"{e.engine_id} ({e.full_length_seqs} of {e.max_num_seqs})" for e in tight)
    return (
        f"Fits, tight: {names} cannot hold max_num_seqs full-length sequences at once; vLLM "
        "queues or preempts the rest when every request is that long."
    )


def _model_short(e: EnginePlan) -> str:
    return f"{e.served_name}, {e.weight_format}, TP {e.tensor_parallel_size}"


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"
