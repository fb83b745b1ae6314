"""Readiness and load, as a load balancer sees one appliance.

Ready means the appliance can take traffic: it has started, it is not draining, and every agent
has an engine up somewhere in its chain (its model's replicas or a fallback). Load is the mean
saturation of the engines (0 idle, 1 full), from the admission gates, or from the gateway's own
in-flight counts when admission control is off. Both are cheap: counters and flags only, no I/O,
so a balancer may ask every second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from appliance.config.schema import AGENTS
from appliance.gateway.breaker import BreakerState
from appliance.load.priority import Priority

if TYPE_CHECKING:
    from appliance.core import Appliance


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str  # why not, or "ready"


def engine_up(services: Appliance, engine_id: str, processes: dict[str, Any]) -> bool:
    """Its process runs and answers (launched engines) or its probe answers (external), and its
    breaker is not open."""
    if services.gateway.breakers[engine_id].state is BreakerState.OPEN:
        return False
    status = processes.get(engine_id)
    if status is not None:
        return str(status.state) == "RUNNING" and bool(status.healthy)
    return services.liveness.results[engine_id].ok


def readiness(services: Appliance) -> Readiness:
    if services.draining:
        return Readiness(False, "draining")
    if not services.ready.is_set():
        return Readiness(False, "starting")
    gateway = services.gateway
    processes = services.supervisor.status() if services.supervisor is not None else {}
    for agent in AGENTS:
        settings = services.config.agents[agent]
        chain = (settings.model, *settings.fallbacks)
        if not any(
            engine_up(services, e, processes) for model in chain for e in gateway.replicas(model)
        ):
            return Readiness(False, f"no engine up for agent {agent}")
    return Readiness(True, "ready")


def saturation(services: Appliance) -> float:
    """The appliance's load, 0 (idle) to 1 (every engine full): the mean over its engines."""
    gateway = services.gateway
    capacity = {e.id: e.max_num_seqs for e in services.config.engines}
    scores: list[float] = []
    for engine_id in gateway.clients:
        if services.load.admission is not None:
            score = gateway.admission.saturation(engine_id, Priority.INTERACTIVE)
        else:
            score = gateway.balancer.in_flight[engine_id] / max(1, capacity.get(engine_id, 1))
        scores.append(min(1.0, max(0.0, score)))
    return sum(scores) / len(scores) if scores else 0.0
