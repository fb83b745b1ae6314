"""Plan a profile on the GPUs at hand, and refuse to launch one that does not fit.

A profile with `gpus = "cpu"` is planned on host memory for vLLM's CPU build (`host.py`).
Otherwise the GPUs come from, in order: a declared spec given for a what-if (`--gpus 2xA100-40GB`), NVML
on this host, the profile's own `gpus`. A host without the NVIDIA driver plans for the declared
hardware and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from appliance.config.schema import CatalogEntry, Config, EngineConfig
from appliance.errors import ConfigError, GpuSpecError, NvmlUnavailable, PlacementError
from appliance.monitor.nvml import GpuInfo, read_gpus
from appliance.placement.gpus import Gpu, from_nvml, parse_gpu_spec
from appliance.placement.host import is_host_spec, plan_on_host
from appliance.placement.plan import Plan, Suggestion
from appliance.placement.planner import GpuSource, plan_engines
from appliance.placement.render import explain
from appliance.placement.suggest import suggest

GpuInput = str | Sequence[GpuInfo] | Sequence[Gpu] | None
Reader = Callable[[], list[GpuInfo]]


def check_plan(config: Config, gpus: GpuInput = None) -> Plan:
    """The plan `appliance serve` launches with; `PlacementError` with the numbers and the
    suggested changes when it does not fit."""
    plan = plan_profile(
        config.profile,
        config.engines,
        config.catalog,
        gpus=gpus,
        declared=config.gpus,
        source=config.source,
    )
    if not plan.feasible:
        raise PlacementError(explain(plan))
    return plan


def plan_profile(
    profile: str,
    engines: Sequence[EngineConfig],
    catalog: dict[str, CatalogEntry],
    *,
    gpus: GpuInput = None,
    declared: str = "none",
    source: str = "models.toml",
    read: Reader = read_gpus,
) -> Plan:
    """Plan one profile; when it does not fit, attach the suggested changes. `read` reads NVML
    (replaced in tests, and cached by `appliance plan --all`)."""
    if not any(e.kind == "vllm" for e in engines):
        return plan_engines(engines, [], catalog, profile=profile, source=source)
    if gpus is None and is_host_spec(declared):
        return plan_on_host(profile, engines, catalog, source=source)
    found, where, note = resolve_gpus(gpus, declared, source=source, profile=profile, read=read)
    plan = plan_engines(
        engines,
        found,
        catalog,
        profile=profile,
        source=source,
        gpu_source=where,
        gpus_note=note,
    )
    if plan.feasible or not found:
        return plan
    advice = suggest(engines, found, catalog, source=source)
    return _with_suggestions(plan, advice)


def resolve_gpus(
    gpus: GpuInput,
    declared: str,
    *,
    source: str = "models.toml",
    profile: str = "",
    read: Reader = read_gpus,
) -> tuple[list[Gpu], GpuSource, str]:
    """(GPUs, where they came from, a sentence for the report)."""
    if isinstance(gpus, str):
        try:
            parsed = parse_gpu_spec(gpus)
        except GpuSpecError as exc:
            raise ConfigError("command line", "--gpus", exc.expected, got=repr(exc.got)) from None
        return parsed, "what-if", f"what-if: --gpus {gpus}"
    if gpus is not None:
        found = [g if isinstance(g, Gpu) else from_nvml([g])[0] for g in gpus]
        return found, "nvml", "read from NVML"
    try:
        seen = from_nvml(read())
    except NvmlUnavailable as exc:
        why = f"no NVIDIA driver here: {exc.reason}"
    else:
        if seen:
            return seen, "nvml", "read from NVML on this host"
        why = "NVML sees no GPUs on this host"
    try:
        parsed = parse_gpu_spec(declared)
    except GpuSpecError as exc:
        raise ConfigError(
            source, f"profiles.{profile}.gpus", exc.expected, got=repr(exc.got)
        ) from None
    if not parsed:
        return [], "none", f"{why}; the profile declares none"
    return parsed, "declared", f"the profile's declared GPUs; {why}"


def _with_suggestions(plan: Plan, advice: tuple[Suggestion, ...]) -> Plan:
    return msgspec.structs.replace(plan, suggestions=advice)
