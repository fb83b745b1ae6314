"""The Genetic and Wellness analysis endpoints: the history screened for a crisis, then analysed.

The agents themselves (`genetic.py`, `wellness.py`, on `analysis.py`) give a validated struct by
the guide's fallbacks; here a crisis in anything the person wrote adds the crisis notice, and
raises a Wellness analysis to urgent, whatever the model said.
"""

from __future__ import annotations

import logging
from typing import Any

from appliance.agents.analysis import Analyst
from appliance.agents.calling import Answer
from appliance.agents.safety import CrisisProtocol, CrisisScreen
from appliance.agents.schemas import (
    AnalysisRequest,
    CrisisNotice,
    GeneticAnalysisResponse,
    GeneticTraits,
    WellnessAnalysisResponse,
    WellnessInsights,
)
from appliance.agents.validation import RequestChecks
from appliance.agents.wellness import with_crisis

log = logging.getLogger("appliance.agents")


class Analyses:
    """Both analyses, each after the same crisis screen of the history."""

    def __init__(
        self,
        *,
        genetic: Analyst[GeneticTraits],
        wellness: Analyst[WellnessInsights],
        screen: CrisisScreen,
        protocol: CrisisProtocol,
        checks: RequestChecks,
    ) -> None:
        self.genetic = genetic
        self.wellness = wellness
        self.screen = screen
        self.protocol = protocol
        self.checks = checks

    async def analyze_genetic(self, request: AnalysisRequest) -> GeneticAnalysisResponse:
        """Traits and preferences from the history."""
        crisis = await self._screen(request, "genetic")
        answer = await self.genetic.analyze(request)
        return GeneticAnalysisResponse(
            analysis=answer.value,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
            notice=analysis_notice(answer),
        )

    async def analyze_wellness(self, request: AnalysisRequest) -> WellnessAnalysisResponse:
        """Patterns in the check-ins; urgent whenever the history holds a crisis."""
        crisis = await self._screen(request, "wellness")
        answer = await self.wellness.analyze(request)
        insights = with_crisis(answer.value) if crisis is not None else answer.value
        return WellnessAnalysisResponse(
            insights=insights,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
            notice=analysis_notice(answer),
        )

    async def _screen(self, request: AnalysisRequest, agent: str) -> CrisisNotice | None:
        """Validate, then run the phrase lists over everything the person wrote."""
        self.checks.analysis(request)
        texts = [t.content for t in request.messages if t.role == "user"]
        texts += [c.note for c in request.check_ins if c.note]
        signal = await self.screen.phrases_in(texts)
        log.info(
            "%s analysis: %d messages, %d check-ins, detector %s",
            agent,
            len(request.messages),
            len(request.check_ins),
            signal.level,
        )
        if not signal.is_crisis:
            return None
        return self.protocol.notice(signal.categories, "crisis_detector", request.locale)


def analysis_notice(answer: Answer[Any]) -> str | None:
    """A plain sentence when no model answered."""
    if answer.step == "cache":
        return "No model could answer; this analysis was given before for the same history."
    if answer.step == "generic":
        return "No model could answer; this is a generic analysis with low confidence."
    return None
