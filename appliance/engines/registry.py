"""From the config's engines to what the gateway calls (endpoints) and what the supervisor runs.

Each kind has its own module; `sim` and `vllm` are imported only when an engine of that kind is
configured, so a host without one never pays for it.
"""

from __future__ import annotations

import importlib
import secrets
from collections.abc import Mapping
from typing import Any

from appliance.config.schema import Config, EngineConfig
from appliance.engines import external
from appliance.engines.base import Endpoint, LaunchSpec
from appliance.errors import ConfigError


def new_internal_api_key() -> str:
    """A fresh key for the engines the appliance launches on loopback, new on every start.

    Only the appliance knows it, so other local users cannot call the engines directly.
    """
    return secrets.token_urlsafe(32)


def build_engines(
    config: Config, api_key: str, plan: object | None = None
) -> tuple[list[Endpoint], list[LaunchSpec]]:
    """Endpoints for every engine, launch specs for the ones the appliance runs, in config order.

    `plan` is the placement plan; a `vllm` engine gets its entry (`plan.engines[engine.id]`) when
    the plan has one.
    """
    endpoints: list[Endpoint] = []
    specs: list[LaunchSpec] = []
    for index, engine in enumerate(config.engines):
        if engine.kind == "external":
            endpoints.append(external.endpoint(engine, api_key, source=config.source))
        elif engine.kind == "sim":
            sim = _kind_module("sim")
            endpoints.append(sim.endpoint(engine, api_key))
            specs.append(sim.launch_spec(engine, api_key, config.catalog))
        elif engine.kind == "vllm":
            vllm = _kind_module("vllm")
            endpoints.append(vllm.endpoint(engine, api_key))
            specs.append(vllm.launch_spec(engine, api_key, placement_for(plan, engine)))
        else:
            raise ConfigError(
                config.source,
                f"profiles.{config.profile}.engines[{index}].kind",
                "one of 'vllm', 'sim', 'external'",
                got=repr(engine.kind),
            )
    return endpoints, specs


def placement_for(plan: object | None, engine: EngineConfig) -> object | None:
    """The plan's entry for `engine`: from a mapping by id, or a sequence by `engine_id`."""
    entries = getattr(plan, "engines", None)
    if isinstance(entries, Mapping):
        return entries.get(engine.id)
    if isinstance(entries, list | tuple):
        return next((e for e in entries if getattr(e, "engine_id", None) == engine.id), None)
    return None


def _kind_module(kind: str) -> Any:
    return importlib.import_module(f"appliance.engines.{kind}")
