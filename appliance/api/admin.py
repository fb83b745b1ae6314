"""Operator routes: circuit breakers, to see and reset (the load control's view: `api/load.py`).

Behind the API keys like everything but `/health`; `appliance breaker` is their command line.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath

from appliance.errors import UnknownEngine
from appliance.gateway.gateway import Gateway

log = logging.getLogger("appliance.api.admin")


def breaker_views(gateway: Gateway) -> dict[str, dict[str, Any]]:
    return {engine: b.snapshot() for engine, b in gateway.breakers.items()}


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]

    @get("/breakers", summary="Circuit breaker of every engine")
    async def breakers(self, gateway: NamedDependency[Gateway]) -> dict[str, Any]:
        return {"breakers": breaker_views(gateway)}

    @post("/breakers/reset", status_code=200, summary="Close every circuit breaker")
    async def reset_all(self, gateway: NamedDependency[Gateway]) -> dict[str, Any]:
        for breaker in gateway.breakers.values():
            breaker.reset()
        log.info("every circuit breaker reset by an operator")
        return {"reset": sorted(gateway.breakers), "breakers": breaker_views(gateway)}

    @post("/breakers/{engine:str}/reset", status_code=200, summary="Close one circuit breaker")
    async def reset_one(
        self, gateway: NamedDependency[Gateway], engine: FromPath[str]
    ) -> dict[str, Any]:
        breaker = gateway.breakers.get(engine)
        if breaker is None:
            raise UnknownEngine(
                f"No engine `{engine}`; engines: {', '.join(sorted(gateway.breakers))}."
            )
        breaker.reset()
        log.info("circuit breaker %s reset by an operator", engine)
        return {"reset": [engine], "breakers": breaker_views(gateway)}
