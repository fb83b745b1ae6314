"""How an agent calls its models: the gateway seam, the request payload, and what counts as down.

The gateway does retry -> breaker -> fallback model; an agent adds the last two steps of the
guide's order (cache, generic) on top, so it needs to know which failures mean "no model can
answer now" as opposed to bugs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from appliance.agents.prompts import system_prompt
from appliance.agents.schemas import FallbackStep
from appliance.config.schema import AgentConfig
from appliance.errors import EngineRefused, EngineUnavailable, InvalidModelOutput, Overloaded
from appliance.gateway.gateway import Completion, Route
from appliance.load.priority import Priority

T = TypeVar("T")
Message = dict[str, str]

# No model could answer: down, timed out, shed, breaker open, or an engine error the gateway does
# not retry. An agent answers these from its cache or its generic message.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    EngineUnavailable,
    Overloaded,
    TimeoutError,
    EngineRefused,
    InvalidModelOutput,
)


class Completer(Protocol):
    """What agents need of the gateway (a fake in tests)."""

    def route(self, model: str) -> Route: ...

    async def complete(
        self,
        route: Route,
        payload_for: Callable[[str], dict[str, Any]],
        *,
        priority: Priority,
    ) -> Completion: ...


@dataclass(frozen=True, slots=True)
class Answer(Generic[T]):
    """An agent's result and the fallback step that produced it."""

    value: T
    step: FallbackStep
    model: str | None

    @property
    def fallback_used(self) -> bool:
        """Anything but the primary model; the crisis protocol is a path of its own, not a fallback."""
        return self.step not in ("model", "crisis_protocol")


def step_for(completion: Completion) -> FallbackStep:
    return "fallback_model" if completion.fallback_used else "model"


def reason(exc: BaseException) -> str:
    """Why a model could not answer, for notices and logs (never content)."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, Overloaded):
        return "shed under load"
    if isinstance(exc, InvalidModelOutput):
        return "invalid output"
    if isinstance(exc, EngineUnavailable):
        return "no engine available"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):  # the engine refused it; the gateway logged the engine's message
        return f"engine answered {status}"
    return type(exc).__name__


class AgentCaller:
    """One agent's model calls: its system prompt, sampling settings, route and priority."""

    def __init__(self, agent: str, settings: AgentConfig, gateway: Completer) -> None:
        self.agent = agent
        self.settings = settings
        self.gateway = gateway
        self.priority = Priority.for_agent(agent)
        self.system = system_prompt(agent)

    def messages(self, *conversation: Message) -> list[Message]:
        return [{"role": "system", "content": self.system}, *conversation]

    async def text(
        self, messages: list[Message], *, extra: dict[str, Any] | None = None
    ) -> tuple[str | None, Completion]:
        """The model's reply text (None when it sent none) and what produced it."""
        settings = self.settings
        base = {
            "messages": messages,
            "temperature": settings.temperature,
            "top_p": settings.top_p,
            "max_tokens": settings.max_tokens,
            **(extra or {}),
        }
        completion = await self.gateway.complete(
            self.gateway.route(self.agent),
            lambda model: {**base, "model": model},
            priority=self.priority,
        )
        return completion.result.text, completion


async def within(deadline_s: float, call: Any) -> Any:
    """Await `call` for at most `deadline_s`; a `TimeoutError` past it."""
    async with asyncio.timeout(deadline_s):
        return await call
