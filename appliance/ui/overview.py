"""The one JSON document the operations page draws: engines, GPUs, agents, admission, placement,
benchmarks and crisis-reply counts, gathered from the services that own them.

Read-only and cheap: the live figures are already kept by the monitors; the placement plan is
computed once. Counts only: no request or reply text is ever part of it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from appliance import __version__
from appliance.api.auth import api_keys
from appliance.api.health import engine_views, overall
from appliance.config.schema import AGENTS, Config
from appliance.core import Appliance
from appliance.errors import ApplianceError
from appliance.load.priority import Priority
from appliance.placement import plan_profile
from appliance.placement.render import render_plan
from appliance.ui.bench_digest import BenchDigest
from appliance.ui.history import History, delta, share


class Overview:
    def __init__(self, services: Appliance, history: History, bench: BenchDigest) -> None:
        self.services = services
        self.history = history
        self.bench = bench
        self._placement: dict[str, Any] | None = None

    async def document(self) -> dict[str, Any]:
        services = self.services
        views = engine_views(services)
        await self.bench.refresh()
        return {
            "generated_at": time.time(),
            "appliance": {
                "version": __version__,
                "profile": services.config.profile,
                "status": overall(services, views),
                "ready": services.ready.is_set(),
                "uptime_s": round(time.time() - services.started_at, 1),
                "auth": "key" if api_keys(services.config) else "open",
                "latency_window_s": services.config.admission.latency_window_s,
            },
            "engines": self._engines(views),
            "gpus": services.load.gpu.snapshot(),
            "host": services.load.host.snapshot(),
            "agents": self._agents(),
            "admission": self._admission(),
            "placement": await self.placement(),
            "benchmarks": self.bench.view(),
            "crisis": {
                "total": sum(services.agents.crisis_replies.values()),
                "by_source": dict(sorted(services.agents.crisis_replies.items())),
            },
        }

    def history_document(self) -> dict[str, Any]:
        config = self.services.config
        series = self.history.series()
        return {
            "interval_s": self.history.interval_s,
            "horizon_s": self.history.horizon_s,
            "now": time.time(),
            "agents": {
                agent: {
                    "band_s": list(config.agents[agent].expected.p95_s),
                    "points": [[round(at, 1), p95] for at, p95 in series[agent]],
                }
                for agent in AGENTS
            },
        }

    # -- sections ----------------------------------------------------------------------------------

    def _engines(self, views: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
        load = self.services.load
        now = load.clock()
        max_age = self.services.config.admission.metrics_max_age_s
        gates = load.admission.gates if load.admission is not None else {}
        out = []
        for engine_id, view in views.items():
            scraped = load.scraper.loads.get(engine_id)
            gate = gates.get(engine_id)
            breaker = view["circuit_breaker"]
            out.append(
                {
                    "id": engine_id,
                    "models": view["models"],
                    "kind": view["kind"],
                    "state": view["state"],
                    "up": view["up"],
                    "restarts": view.get("restarts", 0),
                    "breaker": breaker.get("state"),
                    "breaker_failures": breaker.get("failures", 0),
                    "running": scraped.running if scraped is not None else None,
                    "queue": scraped.waiting if scraped is not None else None,
                    "kv_cache_usage": scraped.kv_usage if scraped is not None else None,
                    "metrics_fresh": scraped.fresh(now, max_age) if scraped is not None else False,
                    "in_flight": gate.in_flight if gate is not None else None,
                    "capacity": gate.capacity if gate is not None else None,
                    "waiting": gate.waiting if gate is not None else None,
                    "last_error": view.get("last_error"),
                }
            )
        return out

    def _agents(self) -> list[dict[str, Any]]:
        config: Config = self.services.config
        now, then, seconds = self.history.rates()
        out = []
        for agent in AGENTS:
            settings = config.agents[agent]
            window = self.services.load.latency.agent_e2e(agent)
            cls = Priority.for_agent(agent).name.lower()
            tokens = delta(now.tokens, then.tokens, agent)
            token_s = delta(now.token_seconds, then.token_seconds, agent)
            served = delta(now.served, then.served, agent)
            admitted = delta(now.admitted, then.admitted, cls)
            shed = delta(now.shed, then.shed, cls)
            out.append(
                {
                    "agent": agent,
                    "model": settings.model,
                    "fallbacks": list(settings.fallbacks),
                    "class": cls,
                    "samples": window.count if window is not None else 0,
                    "p50_s": round(window.p50, 4) if window is not None else None,
                    "p95_s": round(window.p95, 4) if window is not None else None,
                    "band_s": list(settings.expected.p95_s),
                    "verdict": _verdict(window.p95, settings.expected.p95_s) if window else None,
                    "tokens_per_s": round(tokens / token_s, 1) if token_s > 0 else None,
                    "tokens_band": list(settings.expected.tokens_per_s),
                    "requests": now.requests.get(agent, 0),
                    "fallback_rate": share(delta(now.fallbacks, then.fallbacks, agent), served),
                    "shed_rate": share(shed, admitted + shed),
                    "rate_window_s": round(seconds, 1),
                }
            )
        return out

    def _admission(self) -> dict[str, Any]:
        load = self.services.load
        now = self.history.counts.read()
        gates = load.admission.gates.values() if load.admission is not None else ()
        waiting = {p.name.lower(): sum(g.waiting_by_class[p] for g in gates) for p in Priority}
        return {
            "enabled": load.admission is not None,
            "classes": [
                {
                    "class": p.name.lower(),
                    "admitted": now.admitted.get(p.name.lower(), 0),
                    "rerouted": now.rerouted.get(p.name.lower(), 0),
                    "shed": now.shed.get(p.name.lower(), 0),
                    "waiting": waiting[p.name.lower()],
                }
                for p in Priority
            ],
        }

    async def placement(self) -> dict[str, Any]:
        """The profile's plan, computed once (it reads NVML, so off the event loop)."""
        if self._placement is None:
            config = self.services.config
            try:
                plan = await asyncio.to_thread(
                    plan_profile,
                    config.profile,
                    config.engines,
                    config.catalog,
                    declared=config.gpus,
                    source=config.source,
                )
            except ApplianceError as exc:
                return {"error": str(exc)}
            self._placement = {
                "feasible": plan.feasible,
                "gpu_source": plan.gpu_source,
                "gpus_note": plan.gpus_note,
                "not_placed": list(plan.not_placed),
                "engines": [
                    {
                        "engine": e.engine_id,
                        "model": e.served_name,
                        "gpus": list(e.gpus),
                        "tensor_parallel_size": e.tensor_parallel_size,
                        "gpu_memory_utilization": e.gpu_memory_utilization,
                        "max_num_seqs": e.max_num_seqs,
                        "kv_cache_tokens": e.kv_cache_tokens,
                        "verdict": e.verdict,
                    }
                    for e in plan.engines
                ],
                "gpu_use": msgspec.to_builtins(plan.gpu_use),
                "text": render_plan(plan),
            }
        return self._placement


def _verdict(p95_s: float, band: tuple[float, float]) -> str:
    low, high = band
    return "worse" if p95_s > high else "better" if p95_s < low else "within"
