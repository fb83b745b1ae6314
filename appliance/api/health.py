"""`GET /health` and `GET /health/detailed`: the service guide's JSON plus per-engine state."""

from __future__ import annotations

import time
from typing import Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency

from appliance import __version__
from appliance.core import Appliance
from appliance.loadbalancer.readiness import readiness

OK_STATES = ("healthy", "degraded")


def engine_views(services: Appliance) -> dict[str, dict[str, Any]]:
    processes = services.supervisor.status() if services.supervisor is not None else {}
    views: dict[str, dict[str, Any]] = {}
    for endpoint in services.endpoints:
        engine = endpoint.engine_id
        live = services.liveness.results[engine]
        proc = processes.get(engine)
        breaker = services.gateway.breakers[engine].snapshot()
        up = proc.state == "RUNNING" if proc is not None else live.ok
        view: dict[str, Any] = {
            "models": list(endpoint.names),
            "kind": "external" if not endpoint.launched else _kind(services, engine),
            "up": up and breaker["state"] != "open",
            "state": str(proc.state)
            if proc is not None
            else ("RUNNING" if live.ok else "UNREACHABLE"),
            "latency_ms": live.latency_ms,
            "circuit_breaker": breaker,
            # Per replica: what the gateway has in it now and what it answered.
            "replicas": len(services.gateway.replicas(endpoint.names[0])),
            "in_flight": services.gateway.balancer.in_flight[engine],
            "requests": services.gateway.balancer.served[engine],
        }
        if proc is not None:
            view.update(
                pid=proc.pid,
                restarts=proc.restarts,
                since=proc.since,
                last_exit_code=proc.last_exit_code,
                last_error=proc.last_error,
                progress=proc.progress,
            )
        elif live.error:
            view["last_error"] = live.error
        views[engine] = view
    return views


def _kind(services: Appliance, engine_id: str) -> str:
    return next(e.kind for e in services.config.engines if e.id == engine_id)


def overall(services: Appliance, views: dict[str, dict[str, Any]]) -> str:
    if services.supervisor is not None and not services.engines_started.is_set():
        return "starting"
    up = [v["up"] for v in views.values()]
    if all(up):
        return "healthy"
    return "degraded" if any(up) else "unhealthy"


def health_body(services: Appliance) -> tuple[int, dict[str, Any]]:
    views = engine_views(services)
    status = overall(services, views)
    breaker_state, failures = services.gateway.breaker_summary()
    latencies = [v["latency_ms"] for v in views.values() if v["up"] and v["latency_ms"] is not None]
    body = {
        "status": status,
        "version": __version__,
        "llm": {
            "status": status,
            "latency_ms": round(sum(latencies) / len(latencies), 2) if latencies else None,
            # Distinct served names: replicas of one model count once.
            "models_available": len({m for v in views.values() if v["up"] for m in v["models"]}),
            "circuit_breaker_state": breaker_state,
            "circuit_breaker_failures": failures,
        },
        "profile": services.config.profile,
        "engines": views,
    }
    return (200 if status in OK_STATES else 503), body


class HealthController(Controller):
    path = "/health"
    include_in_schema = True
    tags = ["health"]

    @get("/", summary="Basic health check (the service guide's JSON)")
    async def health(self, appliance: NamedDependency[Appliance]) -> Response[dict[str, Any]]:
        code, body = health_body(appliance)
        return Response(body, status_code=code)

    @get("/live", summary="Liveness for a load balancer: the process is up")
    async def live(self) -> Response[dict[str, str]]:
        return Response({"status": "live"}, status_code=200)

    @get(
        "/ready",
        summary="Readiness for a load balancer: 200 when it can take traffic, else 503",
        description=(
            "Ready: started, not draining after SIGTERM, and an engine up for every agent "
            "(its model's replicas or a fallback). No key needed; counters only, no engine call."
        ),
    )
    async def ready(self, appliance: NamedDependency[Appliance]) -> Response[dict[str, str]]:
        state = readiness(appliance)
        body = {"status": "ready" if state.ready else "not_ready", "reason": state.reason}
        return Response(body, status_code=200 if state.ready else 503)

    @get("/detailed", summary="Health with engines, load, latency windows and storage")
    async def detailed(self, appliance: NamedDependency[Appliance]) -> Response[dict[str, Any]]:
        code, body = health_body(appliance)
        body["uptime_s"] = round(time.time() - appliance.started_at, 1)
        body["ready"] = appliance.ready.is_set()
        body["agents"] = appliance.agents.snapshot()
        body.update(appliance.load.detailed())
        return Response(body, status_code=code)
