"""System prompts, kept as Markdown files a clinician can review."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from appliance.config.schema import AGENTS


@cache
def system_prompt(agent: str) -> str:
    if agent not in AGENTS:
        raise KeyError(agent)
    return files("appliance.agents").joinpath("prompts", f"{agent}.md").read_text("utf-8").strip()
