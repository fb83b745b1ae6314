"""The Wellness agent: mental-health patterns, the trend, one proactive step and its urgency.

Careful and measured, validated JSON only, at `Priority.ANALYSIS`. Its generic answer reads the
check-ins' own numbers. Whatever answered, a crisis found by the detector in the history raises the
urgency to `urgent` with crisis support as the step: a model may miss it, the detector does not.
"""

from __future__ import annotations

import msgspec

from appliance.agents.analysis import Analyst
from appliance.agents.cache import ResponseCache
from appliance.agents.calling import AgentCaller
from appliance.agents.fallbacks import wellness_generic
from appliance.agents.schemas import AnalysisRequest, SuggestedAction, WellnessInsights
from appliance.config.schema import SafetyConfig

CRISIS_ACTION = SuggestedAction(
    kind="crisis_support",
    message="Reach out now with care, and offer the crisis resources for their region.",
)


def wellness_agent(
    caller: AgentCaller, cache: ResponseCache, safety: SafetyConfig
) -> Analyst[WellnessInsights]:
    return Analyst(caller, cache, safety, WellnessInsights, _generic)


def with_crisis(insights: WellnessInsights) -> WellnessInsights:
    """The insights with urgency and action raised for a crisis in the history."""
    return msgspec.structs.replace(insights, urgency="urgent", suggested_action=CRISIS_ACTION)


def _generic(request: AnalysisRequest) -> WellnessInsights:
    return wellness_generic(request.check_ins)
