"""The Genetic agent: stable traits and preferences from a person's messages or check-ins.

Analytic and consistent: a fixed trait vocabulary, scores and confidences in [0, 1], evidence
counts, validated JSON only. Runs at `Priority.ANALYSIS`, shed before conversation under load.
"""

from __future__ import annotations

from appliance.agents.analysis import Analyst
from appliance.agents.cache import ResponseCache
from appliance.agents.calling import AgentCaller
from appliance.agents.fallbacks import genetic_generic
from appliance.agents.schemas import AnalysisRequest, GeneticTraits
from appliance.config.schema import SafetyConfig


def genetic_agent(
    caller: AgentCaller, cache: ResponseCache, safety: SafetyConfig
) -> Analyst[GeneticTraits]:
    return Analyst(caller, cache, safety, GeneticTraits, _generic)


def _generic(_: AnalysisRequest) -> GeneticTraits:
    return genetic_generic()
