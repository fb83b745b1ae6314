"""Synthetic requests shaped like Kai traffic, reproducible from a seed.

The text is obviously synthetic (a marker plus neutral filler words): benchmarks never send, and so
never store, anything a person wrote. What matters is the shape: how much history each agent gets
and how long its answer is, so that prefill and decode load look like real use.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass

from appliance.config.schema import AGENTS

MARKER = "(synthetic benchmark text)"
_FILLER = (
    "morning walk tea window garden music friend plan week rest sleep work call family note "
    "light rain list step book river quiet time task water bread chair table road paper green "
    "small steady simple gentle slow bright calm open warm clear short long usual busy today "
    "later often again maybe really little enough"
)
_WORDS = tuple(_FILLER.split(" "))


@dataclass(frozen=True, slots=True)
class Shape:
    """Lengths for one agent: words per message and answer tokens (inclusive ranges)."""

    history_turns: tuple[int, int]  # prior user+assistant exchanges, or check-ins for analysis
    user_words: tuple[int, int]
    history_words: tuple[int, int]  # per assistant turn or per check-in
    output_tokens: tuple[int, int]


# Answer lengths follow the service guide's own table: its P95 at its tokens/s bounds what an answer
# can be (Kai and Wellness: 5-8 s at 15-20 tok/s, about 100-130 tokens; Genetic: 3-5 s at 25-35
# tok/s, about 90-140; Guardrail: a short JSON verdict). Kai has a few turns of history; Genetic and
# Wellness read a history of check-ins.
SHAPES: dict[str, Shape] = {
    "kai": Shape((2, 6), (12, 60), (40, 120), (80, 125)),
    "guardrail": Shape((0, 0), (12, 80), (0, 0), (20, 60)),
    "genetic": Shape((5, 12), (10, 20), (20, 50), (80, 130)),
    "wellness": Shape((7, 14), (10, 20), (20, 50), (80, 120)),
}

# Per conversation turn: the user's message is checked, Kai answers, the answer is checked;
# now and then a background analysis runs.
MIX_ANALYSIS_P = {"genetic": 0.1, "wellness": 0.1}


@dataclass(frozen=True, slots=True)
class BenchRequest:
    agent: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int  # sent with ignore_eos, so the answer is exactly this long


class Workload:
    """Requests per agent and for the realistic mix; the same seed gives the same requests."""

    def __init__(self, seed: int = 0, max_tokens: Mapping[str, int] | None = None) -> None:
        self.seed = seed
        # The appliance caps each agent's answer at its configured max_tokens; so does this.
        self.max_tokens = dict(max_tokens or {})

    def request(self, agent: str, index: int) -> BenchRequest:
        if agent not in SHAPES:
            raise ValueError(f"unknown agent {agent!r}; expected one of {list(AGENTS)}")
        rng = random.Random(f"{self.seed}:{agent}:{index}")
        shape = SHAPES[agent]
        out = rng.randint(*shape.output_tokens)
        cap = self.max_tokens.get(agent)
        messages = _BUILDERS[agent](rng, shape)
        return BenchRequest(agent, messages, min(out, cap) if cap else out)

    def agent_requests(self, agent: str, count: int, start: int = 0) -> list[BenchRequest]:
        return [self.request(agent, start + i) for i in range(count)]

    def mix_requests(self, count: int, start: int = 0) -> list[BenchRequest]:
        """`count` requests in the order a population of conversations would send them."""
        rng = random.Random(f"{self.seed}:mix:{start}")
        out: list[BenchRequest] = []
        turn = start
        while len(out) < count:
            agents = ["guardrail", "kai", "guardrail"]
            agents += [a for a, p in MIX_ANALYSIS_P.items() if rng.random() < p]
            for i, agent in enumerate(agents):
                out.append(self.request(agent, turn * 8 + i))
            turn += 1
        return out[:count]


def _text(rng: random.Random, words: tuple[int, int]) -> str:
    n = rng.randint(*words)
    return MARKER + " " + " ".join(rng.choice(_WORDS) for _ in range(n)) + "."


def _kai(rng: random.Random, shape: Shape) -> tuple[dict[str, str], ...]:
    msgs: list[dict[str, str]] = []
    for _ in range(rng.randint(*shape.history_turns)):
        msgs.append({"role": "user", "content": _text(rng, shape.user_words)})
        msgs.append({"role": "assistant", "content": _text(rng, shape.history_words)})
    msgs.append({"role": "user", "content": _text(rng, shape.user_words)})
    return tuple(msgs)


def _guardrail(rng: random.Random, shape: Shape) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": _text(rng, shape.user_words)},)


def _analysis(rng: random.Random, shape: Shape) -> tuple[dict[str, str], ...]:
    lines = [
        f"check-in {i + 1}: {_text(rng, shape.history_words)}"
        for i in range(rng.randint(*shape.history_turns))
    ]
    ask = _text(rng, shape.user_words)
    return ({"role": "user", "content": "\n".join([*lines, ask])},)


_BUILDERS = {"kai": _kai, "guardrail": _guardrail, "genetic": _analysis, "wellness": _analysis}
