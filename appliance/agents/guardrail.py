"""The Guardrail agent: classify one message (a person's, or a reply about to be shown).

The fast path: its calls run at `Priority.GUARDRAIL` (admission keeps a separate budget for it, so
it never queues behind Kai's long generations) under a short deadline. The fallback order is the
guide's up to the cache (a verdict for the same text and context); past that the Guardrail is
*unavailable* and the caller applies the configured policy, never a guessed verdict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from appliance.agents.cache import ResponseCache, cache_key
from appliance.agents.calling import UNAVAILABLE, AgentCaller, Answer, reason, step_for, within
from appliance.agents.json_output import complete_json
from appliance.agents.schemas import VERDICT_ORDER, GuardrailVerdict, Turn
from appliance.config.schema import CrisisCategory, SafetyConfig

log = logging.getLogger("appliance.agents.guardrail")

CRISIS_CATEGORIES: tuple[CrisisCategory, ...] = ("suicide", "self_harm", "harm_to_others", "abuse")
Role = Literal["user", "assistant"]

_ASK = {
    "user": "Classify the person's message below.",
    "assistant": "Classify the assistant's reply below, which is about to be shown to the person.",
}


@dataclass(frozen=True, slots=True)
class Unavailable:
    """No model and no cached verdict could judge the message."""

    reason: str


def is_crisis(verdict: GuardrailVerdict) -> bool:
    """A crisis verdict, or a block for one of the crisis categories (the person needs care)."""
    if verdict.verdict == "crisis":
        return True
    return verdict.verdict == "block" and bool(crisis_categories(verdict))


def crisis_categories(verdict: GuardrailVerdict) -> list[CrisisCategory]:
    return [c for c in CRISIS_CATEGORIES if c in verdict.categories]


def releases(verdict: GuardrailVerdict) -> bool:
    """May the text be shown? `allow` and `caution` may; `block` and `crisis` may not."""
    return VERDICT_ORDER.index(verdict.verdict) <= VERDICT_ORDER.index("caution")


class Guardrail:
    def __init__(self, caller: AgentCaller, cache: ResponseCache, safety: SafetyConfig) -> None:
        self.caller = caller
        self.cache = cache
        self.safety = safety

    async def classify(
        self, text: str, *, role: Role = "user", context: Sequence[Turn] = ()
    ) -> Answer[GuardrailVerdict] | Unavailable:
        turns = self.safety.guardrail_context_turns
        context = list(context)[-turns:] if turns else []
        key = cache_key("guardrail", role, text, [(t.role, t.content) for t in context])
        try:
            parsed = await within(
                self.safety.guardrail_timeout_s,
                complete_json(self.caller, self._messages(text, role, context), GuardrailVerdict),
            )
        except UNAVAILABLE as exc:
            why = reason(exc)
            cached = self.cache.get(key)
            if cached is not None:
                log.info("guardrail %s; using the cached verdict %s", why, key[:12])
                return Answer(cached.value, "cache", cached.model)
            log.warning("guardrail unavailable for a %s message (%s)", role, why)
            return Unavailable(why)
        self.cache.put(key, parsed.value, model=parsed.completion.model)
        log.debug(
            "guardrail %s on a %s message of %d chars: %s",
            parsed.completion.model,
            role,
            len(text),
            parsed.value.verdict,
        )
        return Answer(parsed.value, step_for(parsed.completion), parsed.completion.model)

    def _messages(self, text: str, role: Role, context: list[Turn]) -> list[dict[str, str]]:
        parts = [_ASK[role]]
        if context:
            lines = "\n".join(f"{t.role}: {t.content}" for t in context)
            parts.append(f"Recent conversation, for context only:\n<context>\n{lines}\n</context>")
        parts.append(f'<message role="{role}">\n{text}\n</message>')
        return self.caller.messages({"role": "user", "content": "\n\n".join(parts)})
