"""Route a request to an engine and follow the fallback chain when it fails.

The order on failure is the service guide's: retry with backoff -> circuit breaker -> fallback
model. A model served by several engines (replicas) is tried replica by replica, in the order
`replicas.Balancer` gives, before its fallback model. (Cached and generic answers are the agents'
business, above this layer.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar

import msgspec

from appliance.config.schema import AGENTS, Config
from appliance.errors import EngineUnavailable, NotFound, RetryableStatus
from appliance.gateway.breaker import BreakerState, CircuitBreaker
from appliance.gateway.client import EngineClient
from appliance.gateway.completion import ChatCompletion, request_completion
from appliance.gateway.hooks import (
    Admission,
    NullAdmission,
    NullRecorder,
    Permit,
    Priority,
    Recorder,
)
from appliance.gateway.replicas import Balancer, TrackedPermit, conversation_key
from appliance.gateway.retry import TRANSPORT_ERRORS, is_retryable_status, with_retries
from appliance.gateway.transport import Upstream, retryable

log = logging.getLogger("appliance.gateway")
T = TypeVar("T")
_RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (RetryableStatus, *TRANSPORT_ERRORS)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a `model` value leads: an agent's chain, an engine's served name, or `default`."""

    requested: str
    agent: str | None
    targets: tuple[str, ...]  # model names, primary first


@dataclass(slots=True)
class Dispatch:
    """An engine's answer plus what produced it; `release()` once the body is consumed."""

    response: Upstream
    model: str
    engine_id: str
    fallback_used: bool
    skipped: list[str] = field(default_factory=list)
    permit: Permit | None = None
    started: float = 0.0

    def release(self) -> None:
        if self.permit is not None:
            self.permit.release()
            self.permit = None


@dataclass(frozen=True, slots=True)
class Completion:
    """A decoded chat completion (`gateway/completion.py`) plus what produced it."""

    result: ChatCompletion
    model: str
    engine_id: str
    fallback_used: bool
    skipped: list[str]


class Served(msgspec.Struct, Generic[T], frozen=True):
    """What the chain got: the engine's answer, who gave it, and the admission permit to release.

    A frozen msgspec struct, not a dataclass: built on the passthrough's hot path, where a frozen
    dataclass's `__init__` costs over a microsecond more.
    """

    result: T
    model: str
    engine_id: str
    fallback_used: bool
    skipped: list[str]
    permit: Permit
    started: float


class Gateway:
    """Owns one client and one breaker per engine, and the balancer over each model's replicas."""

    def __init__(
        self,
        config: Config,
        clients: Mapping[str, EngineClient],
        *,
        admission: Admission | None = None,
        recorder: Recorder | None = None,
        known_down: Callable[[str], str | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`admission` gives permits and reroutes on load (load control), `recorder` hears each
        outcome, and `known_down` says why an engine is known to be down (the liveness prober):
        such an engine is skipped at once, so a request goes to the next step of the chain
        instead of waiting in admission for a dead engine."""
        self.config = config
        self.clients: dict[str, EngineClient] = dict(clients)
        endpoints = [client.endpoint for client in self.clients.values()]
        # Every served name -> the engines serving it (replicas), in config order.
        self._replicas: dict[str, tuple[EngineClient, ...]] = {}
        for ep in endpoints:
            for name in ep.names:
                self._replicas[name] = (*self._replicas.get(name, ()), self.clients[ep.engine_id])
        self.balancer = Balancer(
            [ep.engine_id for ep in endpoints], sticky_below=config.admission.reroute_at
        )
        self.breakers: dict[str, CircuitBreaker] = {
            ep.engine_id: CircuitBreaker(
                ep.engine_id,
                threshold=config.llm.circuit_breaker_threshold,
                timeout_s=config.llm.circuit_breaker_timeout,
                clock=clock,
            )
            for ep in endpoints
        }
        self.admission: Admission = admission or NullAdmission()
        self.recorder: Recorder = recorder or NullRecorder()
        self.known_down: Callable[[str], str | None] = known_down or _never_down
        self._routes: dict[str, Route] = self._build_routes()

    def _build_routes(self) -> dict[str, Route]:
        routes = {name: Route(name, None, (name,)) for name in self._replicas}
        routes["default"] = Route("default", None, (self.config.default_model,))
        for agent in AGENTS:
            settings = self.config.agents[agent]
            routes[agent] = Route(agent, agent, (settings.model, *settings.fallbacks))
        return routes

    def route(self, model: str) -> Route:
        try:
            return self._routes[model]
        except KeyError:
            raise NotFound(
                f"The model `{model}` does not exist. Use an agent name "
                f"({', '.join(AGENTS)}), `default`, or a served model: "
                f"{', '.join(sorted(self._replicas))}."
            ) from None

    async def dispatch(
        self,
        route: Route,
        body_for: Callable[[str], bytes],
        *,
        priority: Priority,
        timeout: float | None = None,
    ) -> Dispatch:
        """Raw bytes to the first target that answers; the caller streams the body, then releases."""

        async def send(client: EngineClient, model: str) -> Upstream:
            response = await client.post_chat(body_for(model), timeout=timeout)
            if is_retryable_status(response.status):
                raise await retryable(response)
            return response

        served = await self._chain(route, send, priority)
        return Dispatch(
            served.result,
            served.model,
            served.engine_id,
            served.fallback_used,
            served.skipped,
            served.permit,
            served.started,
        )

    async def complete(
        self,
        route: Route,
        payload_for: Callable[[str], dict[str, Any]],
        *,
        priority: Priority,
    ) -> Completion:
        """A decoded chat completion (agent routes), over the passthrough's transport and chain."""

        async def send(client: EngineClient, model: str) -> ChatCompletion:
            return await request_completion(client, payload_for(model))

        started = time.perf_counter()
        served = await self._chain(route, send, priority)
        served.permit.release()
        self.recorder.request_done(
            agent=route.agent,
            model=served.model,
            outcome="ok",
            ttft_s=None,
            e2e_s=time.perf_counter() - started,
            tokens=served.result.completion_tokens,
        )
        return Completion(
            served.result, served.model, served.engine_id, served.fallback_used, served.skipped
        )

    async def _chain(
        self,
        route: Route,
        send: Callable[[EngineClient, str], Awaitable[T]],
        priority: Priority,
    ) -> Served[T]:
        """Retry -> breaker -> next replica -> fallback model, in the guide's order."""
        skipped: list[str] = []
        retry_after: list[float] = []
        key = conversation_key.get()
        for position, model in enumerate(route.targets):
            last_model = position == len(route.targets) - 1
            replicas = self._replicas[model]
            order = self.balancer.order(
                [c.engine_id for c in replicas],
                lambda engine: self.admission.saturation(engine, priority),
                key,
            )
            for rank, engine in enumerate(order):
                client = self.clients[engine]
                label = model if len(replicas) == 1 else f"{model} on {engine}"
                breaker = self.breakers[engine]
                down = self.known_down(engine)
                if down is not None:
                    skipped.append(f"{label}: {down}")
                    continue
                has_fallback = not last_model or rank < len(order) - 1
                if has_fallback and breaker.state is BreakerState.OPEN:
                    # The gateway alone decides on breakers; load control only counts it.
                    self.admission.rerouted(engine, priority, "breaker")
                    skipped.append(f"{label}: circuit breaker open")
                    continue
                decision = self.admission.assess(engine, priority, has_fallback=has_fallback)
                if decision.reroute:
                    skipped.append(f"{label}: {decision.reason}")
                    continue
                if not breaker.allow():
                    skipped.append(f"{label}: circuit breaker open")
                    retry_after.append(breaker.retry_after())
                    continue
                try:
                    inner = await self.admission.acquire(engine, priority)
                except BaseException:  # shed or cancelled: a half-open trial did not happen
                    breaker.abandon()
                    raise
                self.balancer.started(engine)
                permit = TrackedPermit(inner, self.balancer, engine)
                started = time.perf_counter()
                try:
                    result = await self._with_retries(partial(send, client, model))
                except _RETRYABLE_ERRORS as exc:
                    permit.release()
                    breaker.record_failure()
                    self.recorder.engine_failure(engine, type(exc).__name__)
                    skipped.append(f"{label}: {_reason(exc)}")
                    if isinstance(exc, RetryableStatus) and exc.retry_after:
                        retry_after.append(exc.retry_after)
                    continue
                except BaseException:
                    permit.release()
                    breaker.abandon()
                    raise
                breaker.record_success()
                self.balancer.answered(engine)
                if skipped:
                    log.warning(
                        "fell back to %s for %s (%s)", label, route.requested, "; ".join(skipped)
                    )
                return Served(result, model, engine, position > 0, skipped, permit, started)
        raise EngineUnavailable(
            f"No engine could serve `{route.requested}` ({'; '.join(skipped)}).",
            retry_after=max(1.0, min(retry_after)) if retry_after else 5.0,
        )

    def replicas(self, model: str) -> tuple[str, ...]:
        """The engines serving `model` (one, or several replicas)."""
        return tuple(c.engine_id for c in self._replicas.get(model, ()))

    async def _with_retries(self, once: Callable[[], Awaitable[T]]) -> T:
        try:
            return await once()  # the hot path: no retry machinery unless the first try fails
        except _RETRYABLE_ERRORS as exc:
            if self.config.llm.max_retries == 0:
                raise
            first = exc
        return await with_retries(once, self.config.llm, first_error=first)

    def breaker_summary(self) -> tuple[str, int]:
        """The guide's single `circuit_breaker_state` and failure count across engines."""
        states = [b.state for b in self.breakers.values()]
        failures = sum(b.failures for b in self.breakers.values())
        for worst in ("open", "half_open"):
            if any(s == worst for s in states):
                return worst, failures
        return "closed", failures

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()


def _never_down(_engine_id: str) -> str | None:
    return None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RetryableStatus):
        return f"engine answered {exc.status}"
    return f"engine unreachable ({type(exc).__name__})"
