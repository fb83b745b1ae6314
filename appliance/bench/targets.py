"""Where benchmark requests go, and what the run is filed under (profile, GPU, version)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

from appliance import __version__
from appliance.bench.client import Target
from appliance.config.schema import AGENTS, Config
from appliance.errors import ConfigError
from appliance.store.bench_rows import RunMeta

# An agent's system prompt is a few hundred tokens; an engine reached directly gets filler of
# about that size instead, so its prefill looks like the appliance's.
DIRECT_SYSTEM_WORDS = 150


def sim_time_scale(config: Config, model: str) -> float:
    """The time scale of the simulator serving `model`, 1.0 for a real engine."""
    engine = config.engine_for(model)
    if engine is None or engine.kind != "sim" or engine.sim.time_scale <= 0:
        return 1.0
    return engine.sim.time_scale


def appliance_targets(
    config: Config,
    base_url: str,
    api_key: str,
    *,
    agents: Iterable[str] = AGENTS,
    time_scale: float | None = None,
) -> dict[str, Target]:
    """Through the appliance: the model is the agent's name, so its prompt and settings apply."""
    return {
        agent: Target(
            agent=agent,
            base_url=base_url,
            model=agent,
            api_key=api_key,
            time_scale=time_scale or sim_time_scale(config, config.agents[agent].model),
            reports_as=config.agents[agent].model,
        )
        for agent in agents
    }


def engine_targets(
    config: Config,
    *,
    api_key: str | None = None,
    agents: Iterable[str] = AGENTS,
    time_scale: float | None = None,
) -> dict[str, Target]:
    """Straight to each agent's engine, bypassing the appliance (no admission, no fallback)."""
    out: dict[str, Target] = {}
    for agent in agents:
        model = config.agents[agent].model
        engine = config.engine_for(model)
        if engine is None:
            raise ConfigError(config.source, f"agents.{agent}", "a model served by an engine")
        url = engine.base_url or f"http://127.0.0.1:{engine.port}/v1"
        out[agent] = Target(
            agent=agent,
            base_url=url,
            model=model,
            api_key=api_key if api_key is not None else (engine.api_key or ""),
            time_scale=time_scale or sim_time_scale(config, model),
            system_words=DIRECT_SYSTEM_WORDS,
        )
    return out


def describe_gpus(config: Config, read: Callable[[], Sequence[object]] | None = None) -> str:
    """The GPUs NVML sees ("2x NVIDIA A100-SXM4-40GB"), else what the profile declares."""
    names: list[str] = []
    with contextlib.suppress(Exception):
        if read is None:
            from appliance.monitor.nvml import read_gpus

            read = read_gpus
        names = [str(getattr(g, "name", g)) for g in read()]
    if names:
        kinds = sorted(set(names))
        return ", ".join(f"{names.count(k)}x {k}" for k in kinds)
    declared = config.gpus or "none"
    if config.engines and all(e.kind == "sim" for e in config.engines):
        return f"{declared} (simulated engines)"
    return declared


def run_meta(config: Config, gpu: str | None = None) -> RunMeta:
    return RunMeta(
        profile=config.profile,
        gpu=gpu if gpu is not None else describe_gpus(config),
        version=__version__,
        config_source=config.source,
    )
