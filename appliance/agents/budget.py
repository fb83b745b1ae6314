"""Whether each agent's prompt and answer fit the context of every engine that may serve it.

Checked when the configuration is loaded, so that a Guardrail whose system prompt leaves no room
in `max_model_len` fails at start with one line, rather than answering every call with the
engine's 400 (and falling back to policy) while the appliance looks healthy. Tokens are estimated
conservatively from characters: no tokenizer is at hand where the model is a hub id, and the
common tokenizers average three or more characters a token on English prose.
"""

from __future__ import annotations

import math

from appliance.agents.prompts import system_prompt
from appliance.config.schema import AGENTS, Config
from appliance.errors import ConfigError

CHARS_PER_TOKEN = 3.0
# Role markers and special tokens of the chat template, for the system and user turns.
TEMPLATE_TOKENS = 32
# The least room left for the conversation itself (the person's message, context turns).
MESSAGE_ROOM_TOKENS = 256


def prompt_tokens(agent: str) -> int:
    """An upper estimate of the tokens of `agent`'s system prompt, chat template included."""
    return math.ceil(len(system_prompt(agent)) / CHARS_PER_TOKEN) + TEMPLATE_TOKENS


def check_prompts_fit(config: Config) -> None:
    """`ConfigError` for the first agent whose prompt, room for a message and max_tokens exceed
    the max_model_len of an engine serving its model or a fallback."""
    for agent in AGENTS:
        settings = config.agents[agent]
        needed = prompt_tokens(agent) + MESSAGE_ROOM_TOKENS + settings.max_tokens
        for model in (settings.model, *settings.fallbacks):
            engine = config.engine_for(model)
            if engine is None or engine.kind == "external" or engine.max_model_len >= needed:
                continue
            index = config.engines.index(engine)
            raise ConfigError(
                config.source,
                f"profiles.{config.profile}.engines[{index}].max_model_len",
                f"at least {needed} tokens for the {agent} agent: its prompt (about "
                f"{prompt_tokens(agent)}), {MESSAGE_ROOM_TOKENS} for the message and its "
                f"max_tokens ({settings.max_tokens})",
                got=str(engine.max_model_len),
            )
