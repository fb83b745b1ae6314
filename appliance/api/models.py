"""`GET /v1/models`: the four agents, `default`, and every served model."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.di import NamedDependency

from appliance.config.schema import AGENTS
from appliance.core import Appliance


@get("/v1/models", summary="List agents and models (OpenAI-compatible)", tags=["openai"])
async def list_models(appliance: NamedDependency[Appliance]) -> dict[str, Any]:
    services = appliance
    created = int(services.started_at)
    data: list[dict[str, Any]] = [
        {
            "id": agent,
            "object": "model",
            "created": created,
            "owned_by": "kai-appliance",
            "agent": agent,
            "model": services.config.agents[agent].model,
            "fallbacks": list(services.config.agents[agent].fallbacks),
        }
        for agent in AGENTS
    ]
    data.append(
        {
            "id": "default",
            "object": "model",
            "created": created,
            "owned_by": "kai-appliance",
            "model": services.config.default_model,
        }
    )
    listed = {entry["id"] for entry in data}
    for engine in services.config.engines:
        for name in engine.names:
            # A replica of a model already listed, or an external engine's model named like an
            # agent or `default`: one entry.
            if name in listed:
                continue
            listed.add(name)
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": created,
                    "owned_by": engine.kind,
                    "engine": engine.id,
                    "replicas": list(services.gateway.replicas(name)),
                    "max_model_len": engine.max_model_len,
                }
            )
    return {"object": "list", "data": data}
