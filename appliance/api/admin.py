"""Operator routes: circuit breakers (see and reset) and the load control's current view.

Behind the API keys like everything but `/health`; `appliance breaker` is their command line.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, Request, get, post

from appliance.errors import NotFound
from appliance.services import Services

log = logging.getLogger("appliance.api.admin")


class UnknownEngine(NotFound):
    code = "engine_not_found"


def breaker_views(services: Services) -> dict[str, dict[str, Any]]:
    return {engine: b.snapshot() for engine, b in services.gateway.breakers.items()}


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]

    @get("/breakers", summary="Circuit breaker of every engine")
    async def breakers(self, request: Request) -> dict[str, Any]:
        return {"breakers": breaker_views(request.app.state.services)}

    @post("/breakers/reset", status_code=200, summary="Close every circuit breaker")
    async def reset_all(self, request: Request) -> dict[str, Any]:
        services: Services = request.app.state.services
        for breaker in services.gateway.breakers.values():
            breaker.reset()
        log.info("every circuit breaker reset by an operator")
        return {"reset": sorted(services.gateway.breakers), "breakers": breaker_views(services)}

    @post("/breakers/{engine:str}/reset", status_code=200, summary="Close one circuit breaker")
    async def reset_one(self, request: Request, engine: str) -> dict[str, Any]:
        services: Services = request.app.state.services
        breaker = services.gateway.breakers.get(engine)
        if breaker is None:
            raise UnknownEngine(
                f"No engine `{engine}`; engines: {', '.join(sorted(services.gateway.breakers))}."
            )
        breaker.reset()
        log.info("circuit breaker %s reset by an operator", engine)
        return {"reset": [engine], "breakers": breaker_views(services)}

    @get("/load", summary="Admission, engine metrics, latency windows, GPUs and host")
    async def load(self, request: Request) -> dict[str, Any]:
        services: Services = request.app.state.services
        monitor = services.load
        return {
            **monitor.load_section(),
            "latency": monitor.latency.report(),
            "gpus": monitor.gpu.snapshot(),
            "host": monitor.host.snapshot(),
        }
