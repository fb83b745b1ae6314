"""The Guardrail check endpoint: one message (a person's, or a reply about to be shown) judged.

A person's message is screened for a crisis first: a phrase-list crisis is answered without any
model. Then the Guardrail judges, and the Guardrail rule (`policy.py`) settles the verdict, the
same rule a conversation turn follows. Logs carry lengths and verdicts, never the text.
"""

from __future__ import annotations

import logging

from appliance.agents.calling import Answer
from appliance.agents.crisis import CrisisSignal
from appliance.agents.detector import Detection
from appliance.agents.guardrail import Guardrail, Unavailable, crisis_categories
from appliance.agents.policy import GuardrailPolicy
from appliance.agents.safety import CrisisProtocol, CrisisScreen
from appliance.agents.schemas import GuardrailCheckRequest, GuardrailCheckResponse, GuardrailVerdict
from appliance.agents.validation import RequestChecks

log = logging.getLogger("appliance.agents")


class SafetyCheck:
    """Answers `/agents/guardrail/check` with a verdict under every failure."""

    def __init__(
        self,
        *,
        guardrail: Guardrail,
        screen: CrisisScreen,
        protocol: CrisisProtocol,
        policy: GuardrailPolicy,
        checks: RequestChecks,
    ) -> None:
        self.guardrail = guardrail
        self.screen = screen
        self.protocol = protocol
        self.policy = policy
        self.checks = checks

    async def check(self, request: GuardrailCheckRequest) -> GuardrailCheckResponse:
        """The verdict on one message; a crisis carries the locale's resources."""
        self.checks.text("text", request.text)
        self.checks.history(request.context, field="context")
        detection = await self._detect(request)
        signal = detection.signal
        log.info(
            "guardrail check: %s text of %d chars, detector %s (%s)",
            request.role,
            len(request.text),
            signal.level,
            detection.source,
        )
        if signal.is_crisis and detection.source == "patterns":
            return self.protocol.check(signal, request.locale, unavailable=None)
        answer = await self.guardrail.classify(
            request.text, role=request.role, context=request.context
        )
        if isinstance(answer, Unavailable):
            if self.policy.crisis_source(answer, detection) == "classifier":
                return self.protocol.check(signal, request.locale, unavailable=answer.reason)
            return self._unjudged(answer, detection)
        return self._judged(request, answer, detection)

    async def _detect(self, request: GuardrailCheckRequest) -> Detection:
        """Only a person's words are screened; a reply to be shown is the model's to judge."""
        if request.role == "user":
            return await self.screen.detect(request.text, request.context)
        return Detection(CrisisSignal("none"), None)

    def _unjudged(self, answer: Unavailable, detection: Detection) -> GuardrailCheckResponse:
        """No verdict could be had: the policy's, or the classifier's caution under fail_open."""
        judged = self.policy.judge(answer, detection.signal)
        by_classifier = detection.source == "classifier" and judged.verdict == "caution"
        return GuardrailCheckResponse(
            verdict=judged.verdict,
            risk_level="unknown",
            categories=judged.categories,
            rationale=f"The Guardrail could not answer ({answer.reason}); "
            + (
                "the crisis classifier is unsure (caution)."
                if by_classifier
                else f"the {judged.policy} policy decided."
            ),
            source="classifier" if by_classifier else "policy",
            guardrail_available=False,
            policy_applied=judged.policy,
            model=None,
            fallback_used=True,
            fallback_step="generic",
            notice=f"The Guardrail could not answer ({answer.reason}).",
        )

    def _judged(
        self,
        request: GuardrailCheckRequest,
        answer: Answer[GuardrailVerdict],
        detection: Detection,
    ) -> GuardrailCheckResponse:
        """The Guardrail's verdict as the rule settles it; its crisis on a person's message
        carries the crisis notice."""
        value = answer.value
        signal = self.policy.heeded(answer, detection.signal)
        judged = self.policy.judge(answer, signal)
        crisis = None
        if request.role == "user" and self.policy.crisis_source(answer, detection) == "guardrail":
            crisis = self.protocol.notice(crisis_categories(value), "guardrail", request.locale)
        return GuardrailCheckResponse(
            verdict=judged.verdict,
            risk_level=judged.risk_level,
            categories=list(dict.fromkeys([*judged.categories, *signal.categories])),
            rationale=value.rationale,
            source=judged.source,
            guardrail_available=True,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
        )
