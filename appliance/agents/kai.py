"""The Kai agent: drafts the conversational reply.

A draft is only a draft: the orchestrator releases it when the Guardrail allows, and caches it only
then, so the cache never holds a reply that was not released. Empty answers count as no answer.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from appliance.agents.calling import AgentCaller, Answer, step_for, within
from appliance.agents.schemas import Turn
from appliance.config.schema import SafetyConfig
from appliance.errors import InvalidModelOutput

log = logging.getLogger("appliance.agents.kai")


class Kai:
    def __init__(self, caller: AgentCaller, safety: SafetyConfig) -> None:
        self.caller = caller
        self.safety = safety

    async def draft(self, message: str, history: Sequence[Turn]) -> Answer[str]:
        """Kai's reply from a model; raises one of `calling.UNAVAILABLE` when none can answer."""
        conversation = [{"role": t.role, "content": t.content} for t in history]
        messages = self.caller.messages(*conversation, {"role": "user", "content": message})
        text, completion = await within(self.safety.reply_timeout_s, self.caller.text(messages))
        if not text or not text.strip():
            raise InvalidModelOutput(f"{completion.model} answered with an empty reply.")
        log.debug("kai draft from %s: %d chars", completion.model, len(text))
        return Answer(text.strip(), step_for(completion), completion.model)
