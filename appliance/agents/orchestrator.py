"""The orchestrator: the agents' parts built once from the config, behind one object the routes use.

Each concern lives in a module of its own: request limits (`validation.py`), the crisis protocol
and screen (`safety.py`), the Guardrail rule (`policy.py`), a conversation turn (`turn.py`), the
Guardrail check (`check.py`) and the analyses (`analyses.py`). This builds them with their
collaborators and hands each call to the part that owns it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from appliance.agents.analyses import Analyses
from appliance.agents.cache import ResponseCache
from appliance.agents.calling import AgentCaller, Completer
from appliance.agents.check import SafetyCheck
from appliance.agents.detect_worker import DetectWorker
from appliance.agents.detector import CrisisDetector, Detection, default_detector
from appliance.agents.genetic import genetic_agent
from appliance.agents.guardrail import Guardrail
from appliance.agents.kai import Kai
from appliance.agents.policy import GuardrailPolicy
from appliance.agents.resources import Resources
from appliance.agents.safety import CrisisProtocol, CrisisScreen
from appliance.agents.schemas import (
    AnalysisRequest,
    ConverseRequest,
    ConverseResponse,
    CrisisNotice,
    CrisisSource,
    GeneticAnalysisResponse,
    GuardrailCheckRequest,
    GuardrailCheckResponse,
    Turn,
    WellnessAnalysisResponse,
)
from appliance.agents.turn import Conversation
from appliance.agents.validation import RequestChecks
from appliance.agents.wellness import wellness_agent
from appliance.config.schema import AGENTS, Config, CrisisCategory


class Orchestrator:
    """The composition of the agents' parts; every method is one part's."""

    def __init__(
        self,
        config: Config,
        gateway: Completer,
        *,
        clock: Callable[[], float] = time.monotonic,
        detector: CrisisDetector | None = None,
    ) -> None:
        self.detector = detector or default_detector()
        self.safety = safety = config.safety
        self.resources = Resources(safety, source=config.source)
        self.cache = ResponseCache(ttl_s=safety.cache_ttl_s, size=safety.cache_size, clock=clock)
        callers = {agent: AgentCaller(agent, config.agents[agent], gateway) for agent in AGENTS}
        self.guardrail = Guardrail(callers["guardrail"], self.cache, safety)
        self.kai = Kai(callers["kai"], safety)
        self.genetic = genetic_agent(callers["genetic"], self.cache, safety)
        self.wellness = wellness_agent(callers["wellness"], self.cache, safety)
        self.screen = CrisisScreen(DetectWorker(self.detector))
        self.protocol = CrisisProtocol(self.resources)
        self.policy = GuardrailPolicy(safety)
        checks = RequestChecks(safety)
        self.conversation = Conversation(
            kai=self.kai,
            guardrail=self.guardrail,
            cache=self.cache,
            screen=self.screen,
            protocol=self.protocol,
            policy=self.policy,
            checks=checks,
        )
        self.safety_check = SafetyCheck(
            guardrail=self.guardrail,
            screen=self.screen,
            protocol=self.protocol,
            policy=self.policy,
            checks=checks,
        )
        self.analyses = Analyses(
            genetic=self.genetic,
            wellness=self.wellness,
            screen=self.screen,
            protocol=self.protocol,
            checks=checks,
        )

    @property
    def crisis_replies(self) -> dict[str, int]:
        """Crisis-protocol replies given, by what found the crisis: counts only, never any text."""
        return self.protocol.replies

    def crisis_notice(
        self, categories: Sequence[CrisisCategory], source: CrisisSource, locale: str | None
    ) -> CrisisNotice:
        """The crisis notice with the locale's resources (see `CrisisProtocol.notice`)."""
        return self.protocol.notice(categories, source, locale)

    def crisis_text(self, notice: CrisisNotice) -> str:
        """The crisis reply a person reads."""
        return self.protocol.text(notice)

    async def converse(self, request: ConverseRequest) -> ConverseResponse:
        """One conversation turn (see `turn.py`)."""
        return await self.conversation.converse(request)

    async def check(self, request: GuardrailCheckRequest) -> GuardrailCheckResponse:
        """The Guardrail check of one message (see `check.py`)."""
        return await self.safety_check.check(request)

    async def analyze_genetic(self, request: AnalysisRequest) -> GeneticAnalysisResponse:
        """The Genetic analysis of a history (see `analyses.py`)."""
        return await self.analyses.analyze_genetic(request)

    async def analyze_wellness(self, request: AnalysisRequest) -> WellnessAnalysisResponse:
        """The Wellness analysis of a history (see `analyses.py`)."""
        return await self.analyses.analyze_wellness(request)

    async def detect(self, text: str, history: Sequence[Turn] = ()) -> Detection:
        """The layered crisis detection of a person's newest message with their last turns."""
        return await self.screen.detect(text, history)

    async def detect_in(self, text: str, context: Sequence[str]) -> Detection:
        """`context`: the person's earlier messages, oldest first; off the event loop."""
        return await self.screen.detect_in(text, context)

    def snapshot(self) -> dict[str, Any]:
        """For /health/detailed: the cache and the crisis resources in use."""
        return {
            "cache": self.cache.snapshot(),
            "locale": self.resources.default_locale,
            "locales": sorted(self.resources.locales),
            "guardrail_unavailable": self.safety.guardrail_unavailable,
            "crisis_classifier": self.detector.snapshot(),
            "check_reply": self.safety.check_reply,
        }
