"""A fake gateway for the agents: scripted answers per agent, every call recorded."""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from appliance.agents.json_output import json_schema
from appliance.agents.schemas import GeneticTraits, GuardrailVerdict, WellnessInsights
from appliance.config import load_config
from appliance.config.schema import Config
from appliance.gateway.completion import ChatCompletion
from appliance.gateway.gateway import Completion, Route
from appliance.load.priority import Priority
from appliance.simulator.schema_instance import instance

ROOT = Path(__file__).resolve().parents[3]

ALLOW = GuardrailVerdict(verdict="allow", risk_level="none", categories=[], rationale="ok")


def config(**safety: Any) -> Config:
    """The shipped configuration, with `[safety]` settings changed."""
    loaded = load_config(ROOT / "models.toml", env={})
    if not safety:
        return loaded
    return msgspec.structs.replace(loaded, safety=msgspec.structs.replace(loaded.safety, **safety))


def completion(text: str | None, model: str = "m") -> ChatCompletion:
    return msgspec.convert(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
        },
        ChatCompletion,
    )


def as_json(value: msgspec.Struct) -> str:
    return msgspec.json.encode(value).decode()


@dataclass
class Call:
    agent: str | None
    payload: dict[str, Any]
    priority: Priority


# An action: text to answer, an exception to raise, or an async function of the payload.
Action = str | BaseException | Callable[[dict[str, Any]], Awaitable[str]]


class FakeGateway:
    """Answers per agent from a script (first in, first out), else from `default`.

    The default answer for a JSON agent is a schema-valid instance (the simulator's rule), for Kai
    a fixed sentence. `fallback[agent] = True` makes answers look as if a fallback model gave them.
    """

    def __init__(self, cfg: Config) -> None:
        self.config = cfg
        self.script: dict[str, deque[Action]] = defaultdict(deque)
        self.default: dict[str, Action] = {
            "kai": "I hear you. That sounds like a lot to hold.",
            "guardrail": as_json(ALLOW),
            "genetic": msgspec.json.encode(instance(json_schema(GeneticTraits))).decode(),
            "wellness": msgspec.json.encode(instance(json_schema(WellnessInsights))).decode(),
        }
        self.fallback: dict[str, bool] = defaultdict(bool)
        self.calls: list[Call] = []

    def answer(self, agent: str, *actions: Action) -> None:
        self.script[agent].extend(actions)

    def always(self, agent: str, action: Action) -> None:
        self.script[agent].clear()
        self.default[agent] = action

    def calls_for(self, agent: str) -> list[Call]:
        return [c for c in self.calls if c.agent == agent]

    def route(self, model: str) -> Route:
        settings = self.config.agents[model]
        return Route(model, model, (settings.model, *settings.fallbacks))

    async def complete(
        self,
        route: Route,
        payload_for: Callable[[str], dict[str, Any]],
        *,
        priority: Priority,
    ) -> Completion:
        agent = route.agent or route.requested
        fallback = self.fallback[agent]
        model = route.targets[1 if fallback and len(route.targets) > 1 else 0]
        payload = payload_for(model)
        self.calls.append(Call(agent, payload, priority))
        queue = self.script[agent]
        action = queue.popleft() if queue else self.default[agent]
        if isinstance(action, BaseException):
            raise action
        text = action if isinstance(action, str) else await action(payload)
        await asyncio.sleep(0)
        return Completion(completion(text, model), model, f"engine-{model}", fallback, [])
