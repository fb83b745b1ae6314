"""The orchestrator: one conversation turn, one safety check, one analysis, each safe and well formed.

A turn (`converse`):

1. validate (length, history turns; roles are checked by the request struct);
2. crisis detection in layers (`detector.py`) over the message and the person's last turns: a
   phrase-list crisis gets the crisis protocol at once, with the locale's resources, whatever the
   models are doing;
3. the Guardrail on the person's message and Kai's draft run concurrently;
4. the Guardrail decides: a crisis -> crisis protocol; a block -> Kai's draft is dropped and a
   generic message given; unavailable -> the crisis classifier's crisis gets the crisis protocol,
   anything else the configured policy (fail closed by default), and every reply then carries a
   short line with the locale's resources. A classifier crisis the Guardrail model does not share,
   or its grey zone, is a caution: the reply carries that line too;
5. Kai's draft, or its cached reply, or its generic message (the guide's order);
6. by configuration, the Guardrail on Kai's draft; only then is it released (and cached).

Logs carry lengths, counts, verdicts and digests; never a person's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import msgspec

from appliance.agents.cache import ResponseCache, cache_key
from appliance.agents.calling import UNAVAILABLE, AgentCaller, Answer, Completer, reason
from appliance.agents.crisis import CrisisSignal, detect, detect_all
from appliance.agents.detect_worker import DetectWorker
from appliance.agents.detector import CrisisDetector, Detection, default_detector
from appliance.agents.fallbacks import crisis_reply, kai_message, with_offer
from appliance.agents.genetic import genetic_agent
from appliance.agents.guardrail import (
    Guardrail,
    Unavailable,
    crisis_categories,
    is_crisis,
    releases,
)
from appliance.agents.kai import Kai
from appliance.agents.resources import Resources
from appliance.agents.schemas import (
    VERDICT_ORDER,
    AnalysisRequest,
    ConverseRequest,
    ConverseResponse,
    CrisisNotice,
    CrisisSource,
    GeneticAnalysisResponse,
    GuardrailCheckRequest,
    GuardrailCheckResponse,
    GuardrailVerdict,
    Policy,
    ReportedRisk,
    Safety,
    SafetySource,
    Turn,
    Verdict,
    WellnessAnalysisResponse,
)
from appliance.agents.wellness import wellness_agent, with_crisis
from appliance.config.schema import AGENTS, Config, CrisisCategory, CrisisResource
from appliance.errors import BadRequest

log = logging.getLogger("appliance.agents")
# Up to this much text the detector runs on the event loop (about a millisecond per 4,000 chars).
INLINE_DETECT_CHARS = 16_000


@dataclass(frozen=True, slots=True)
class _Judged:
    """The Guardrail's verdict on the person's message, as the turn uses it."""

    verdict: Verdict
    risk_level: ReportedRisk
    categories: list[str]
    source: SafetySource
    available: bool
    policy: Policy | None = None
    why: str | None = None


class Orchestrator:
    def __init__(
        self,
        config: Config,
        gateway: Completer,
        *,
        clock: Callable[[], float] = time.monotonic,
        detector: CrisisDetector | None = None,
    ) -> None:
        self.detector = detector or default_detector()
        self._detect_worker = DetectWorker(self.detector)
        self.safety = safety = config.safety
        self.resources = Resources(safety, source=config.source)
        self.cache = ResponseCache(ttl_s=safety.cache_ttl_s, size=safety.cache_size, clock=clock)
        callers = {agent: AgentCaller(agent, config.agents[agent], gateway) for agent in AGENTS}
        self.guardrail = Guardrail(callers["guardrail"], self.cache, safety)
        self.kai = Kai(callers["kai"], safety)
        self.genetic = genetic_agent(callers["genetic"], self.cache, safety)
        self.wellness = wellness_agent(callers["wellness"], self.cache, safety)
        # Crisis-protocol replies given, by what found the crisis: counts only, never any text.
        self.crisis_replies: dict[str, int] = {}

    # Crisis protocol -------------------------------------------------------------------------

    def crisis_notice(
        self, categories: Sequence[CrisisCategory], source: CrisisSource, locale: str | None
    ) -> CrisisNotice:
        self.crisis_replies[source] = self.crisis_replies.get(source, 0) + 1
        chosen = self.resources.locale(locale)
        cats: list[CrisisCategory] = list(dict.fromkeys(categories)) or ["suicide"]
        return CrisisNotice(
            categories=cats,
            source=source,
            locale=chosen,
            resources=self.resources.for_categories(chosen, cats),
        )

    def crisis_text(self, notice: CrisisNotice) -> str:
        return crisis_reply(notice.categories, notice.resources)

    def _crisis_turn(
        self, notice: CrisisNotice, *, risk: ReportedRisk, available: bool | None
    ) -> ConverseResponse:
        log.warning(
            "converse: crisis (%s, %s); crisis protocol with %d resources for %s",
            ",".join(notice.categories),
            notice.source,
            len(notice.resources),
            notice.locale,
        )
        return ConverseResponse(
            reply=self.crisis_text(notice),
            safety=Safety(
                verdict="crisis",
                risk_level=risk,
                categories=list(notice.categories),
                source=notice.source,
                guardrail_available=available,
                crisis=notice,
            ),
            model=None,
            fallback_used=False,
            fallback_step="crisis_protocol",
            notice=f"Crisis protocol: resources for {notice.locale} were given.",
        )

    # One turn --------------------------------------------------------------------------------

    async def converse(self, request: ConverseRequest) -> ConverseResponse:
        self._check_text("message", request.message)
        self._check_history(request.history)
        signal = detect(request.message)  # the phrase lists: instant
        log.info(
            "converse: message of %d chars, %d history turns, phrase lists %s",
            len(request.message),
            len(request.history),
            signal.level,
        )
        if signal.is_crisis:
            notice = self.crisis_notice(signal.categories, "crisis_detector", request.locale)
            return self._crisis_turn(notice, risk="high", available=None)
        # The classifier runs while the Guardrail model judges: it adds nothing to a turn whose
        # Guardrail answers, and decides when the Guardrail cannot.
        classified = asyncio.create_task(self.detect(request.message, request.history))
        draft = asyncio.create_task(self._draft(request), name="kai-draft")
        try:
            return await self._judge_and_release(request, classified, draft)
        finally:
            for task in (draft, classified):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _judge_and_release(
        self,
        request: ConverseRequest,
        classified: asyncio.Task[Detection],
        draft: asyncio.Task[Answer[str] | BaseException],
    ) -> ConverseResponse:
        judged_answer = await self.guardrail.classify(
            request.message, role="user", context=request.history
        )
        detection = await classified
        log.info("converse: detector %s (%s)", detection.level, detection.source)
        signal = detection.signal
        if isinstance(judged_answer, Answer) and is_crisis(judged_answer.value):
            verdict = judged_answer.value
            found = crisis_categories(verdict) or list(signal.categories)
            notice = self.crisis_notice(found, "guardrail", request.locale)
            return self._crisis_turn(notice, risk=verdict.risk_level, available=True)
        if isinstance(judged_answer, Unavailable) and detection.is_crisis:
            log.info("converse: guardrail %s; the crisis classifier decides", judged_answer.reason)
            notice = self.crisis_notice(signal.categories, "classifier", request.locale)
            return self._crisis_turn(notice, risk="high", available=False)
        if signal.is_crisis:  # the Guardrail model judged and did not share it: a caution
            signal = CrisisSignal("caution", signal.categories)
        judged = self._judged(judged_answer, signal)
        resources = self._resources(request.locale, signal)
        first = not request.history
        down = not judged.available
        if not judged.available and judged.policy == "fail_closed":
            return self._withheld(
                judged,
                kai_message("withheld", signal, resources, first_turn=first, guardrail_down=down),
                f"The safety check could not run ({judged.why}); Kai's reply was withheld "
                "under the fail-closed policy.",
            )
        if judged.available and judged.verdict == "block":
            return self._withheld(
                judged,
                kai_message("declined", signal, resources),
                "The Guardrail declined this message; Kai's reply was withheld.",
            )
        outcome = await draft
        kai_key = cache_key("kai", [(t.role, t.content) for t in request.history], request.message)
        if isinstance(outcome, BaseException):
            return self._kai_fallback(judged, kai_key, outcome, signal, resources, first)
        released = await self._release(request, judged, outcome, kai_key, signal, resources)
        if released.fallback_step == "crisis_protocol":
            return released
        down = down or released.safety.policy_applied == "fail_open"
        reply = with_offer(released.reply, signal, resources, guardrail_down=down)
        return released if reply == released.reply else replace_reply(released, reply)

    async def _release(
        self,
        request: ConverseRequest,
        judged: _Judged,
        draft: Answer[str],
        kai_key: str,
        signal: CrisisSignal,
        resources: list[CrisisResource],
    ) -> ConverseResponse:
        notice = None
        checked = False
        policy = judged.policy
        if self.safety.check_reply:
            context = [*request.history, Turn(role="user", content=request.message)]
            reply_judged = await self.guardrail.classify(
                draft.value, role="assistant", context=context
            )
            if isinstance(reply_judged, Unavailable):
                policy = self.safety.guardrail_unavailable
                if policy == "fail_closed":
                    held = replace(judged, policy=policy)
                    return self._withheld(
                        held,
                        kai_message("withheld", signal, resources, guardrail_down=True),
                        f"The safety check of Kai's reply could not run ({reply_judged.reason}); "
                        "the reply was withheld under the fail-closed policy.",
                    )
                notice = (
                    f"The safety check of Kai's reply could not run ({reply_judged.reason}); "
                    "the reply was released under the fail-open policy."
                )
            elif not releases(reply_judged.value):
                log.warning("converse: Kai's draft held back (%s)", reply_judged.value.verdict)
                return self._withheld(
                    judged,
                    kai_message("reply_held", signal, resources),
                    "The Guardrail held back Kai's draft; a generic message was given instead.",
                    reply_checked=True,
                )
            else:
                checked = True
        if judged.available and (checked or not self.safety.check_reply):
            self.cache.put(kai_key, draft.value, model=draft.model)
        if policy == "fail_open" and notice is None and not judged.available:
            notice = (
                f"The safety check could not run ({judged.why}); Kai's reply was released under "
                "the fail-open policy."
            )
        return ConverseResponse(
            reply=draft.value,
            safety=self._safety(judged, policy=policy, reply_checked=checked),
            model=draft.model,
            fallback_used=draft.fallback_used,
            fallback_step=draft.step,
            notice=notice,
        )

    def _kai_fallback(
        self,
        judged: _Judged,
        kai_key: str,
        exc: BaseException,
        signal: CrisisSignal,
        resources: list[CrisisResource],
        first: bool,
    ) -> ConverseResponse:
        why = reason(exc)
        cached = self.cache.get(kai_key)
        down = not judged.available
        if cached is not None:
            log.info("converse: Kai %s; cached reply %s", why, kai_key[:12])
            return ConverseResponse(
                reply=with_offer(cached.value, signal, resources, guardrail_down=down),
                safety=self._safety(judged, policy=judged.policy),
                model=cached.model,
                fallback_used=True,
                fallback_step="cache",
                notice=f"Kai's models could not answer ({why}); this reply was given before "
                "for the same conversation.",
            )
        log.warning("converse: Kai %s; generic reply", why)
        return ConverseResponse(
            reply=kai_message(
                "unavailable", signal, resources, first_turn=first, guardrail_down=down
            ),
            safety=self._safety(judged, policy=judged.policy),
            model=None,
            fallback_used=True,
            fallback_step="generic",
            notice=f"Kai's models could not answer ({why}); this is a generic message.",
        )

    async def _draft(self, request: ConverseRequest) -> Answer[str] | BaseException:
        try:
            return await self.kai.draft(request.message, request.history)
        except UNAVAILABLE as exc:
            return exc

    def _judged(
        self, answer: Answer[GuardrailVerdict] | Unavailable, signal: CrisisSignal
    ) -> _Judged:
        caution: Verdict = "caution" if signal.level == "caution" else "allow"
        if isinstance(answer, Unavailable):
            policy = self.safety.guardrail_unavailable
            verdict: Verdict = "block" if policy == "fail_closed" else caution
            return _Judged(
                verdict, "unknown", list(signal.categories), "policy", False, policy, answer.reason
            )
        value = answer.value
        return _Judged(
            _worse(value.verdict, caution),
            value.risk_level,
            list(value.categories),
            "cache" if answer.step == "cache" else "guardrail",
            True,
        )

    def _withheld(
        self, judged: _Judged, reply: str, notice: str, *, reply_checked: bool = False
    ) -> ConverseResponse:
        log.info("converse: reply withheld (%s, %s)", judged.verdict, judged.source)
        return ConverseResponse(
            reply=reply,
            safety=self._safety(
                judged, policy=judged.policy, reply_checked=reply_checked, withheld=True
            ),
            model=None,
            fallback_used=True,
            fallback_step="generic",
            notice=notice,
        )

    @staticmethod
    def _safety(
        judged: _Judged,
        *,
        policy: Policy | None,
        reply_checked: bool = False,
        withheld: bool = False,
    ) -> Safety:
        return Safety(
            verdict=judged.verdict,
            risk_level=judged.risk_level,
            categories=judged.categories,
            source=judged.source,
            guardrail_available=judged.available,
            policy_applied=policy,
            reply_checked=reply_checked,
            withheld=withheld,
        )

    def _crisis_check(
        self, signal: CrisisSignal, locale: str | None, *, unavailable: str | None
    ) -> GuardrailCheckResponse:
        """A crisis found before any model: by the phrase lists (`unavailable` None), or by the
        classifier because the Guardrail could not answer (`unavailable`: why not)."""
        source: CrisisSource = "crisis_detector" if unavailable is None else "classifier"
        down = f"The Guardrail could not answer ({unavailable})." if unavailable else None
        return GuardrailCheckResponse(
            verdict="crisis",
            risk_level="high",
            categories=list(signal.categories),
            rationale="The crisis detector found a crisis statement."
            if unavailable is None
            else f"The Guardrail could not answer ({unavailable}); "
            "the crisis classifier found a crisis.",
            source=source,
            guardrail_available=None if unavailable is None else False,
            model=None,
            fallback_used=unavailable is not None,
            fallback_step="crisis_protocol",
            crisis=self.crisis_notice(signal.categories, source, locale),
            notice=down,
        )

    async def detect(self, text: str, history: Sequence[Turn] = ()) -> Detection:
        """The layered crisis detection of a person's newest message with their last turns."""
        return await self.detect_in(text, [t.content for t in history if t.role == "user"])

    async def detect_in(self, text: str, context: Sequence[str]) -> Detection:
        """`context`: the person's earlier messages, oldest first. Off the event loop, on the
        detection thread (see `detect_worker`)."""
        return await self._detect_worker.detect(text, context)

    def _resources(self, locale: str | None, signal: CrisisSignal) -> list[CrisisResource]:
        return self.resources.for_categories(self.resources.locale(locale), signal.categories)

    # Guardrail check -------------------------------------------------------------------------

    async def check(self, request: GuardrailCheckRequest) -> GuardrailCheckResponse:
        self._check_text("text", request.text)
        self._check_history(request.context, field="context")
        if request.role == "user":
            detection = await self.detect(request.text, request.context)
        else:
            detection = Detection(CrisisSignal("none"), None)
        signal = detection.signal
        log.info(
            "guardrail check: %s text of %d chars, detector %s (%s)",
            request.role,
            len(request.text),
            signal.level,
            detection.source,
        )
        if signal.is_crisis and detection.source == "patterns":
            return self._crisis_check(signal, request.locale, unavailable=None)
        answer = await self.guardrail.classify(
            request.text, role=request.role, context=request.context
        )
        if isinstance(answer, Unavailable):
            if signal.is_crisis:
                return self._crisis_check(signal, request.locale, unavailable=answer.reason)
            judged = self._judged(answer, signal)
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
        value = answer.value
        crisis = None
        if signal.is_crisis:  # the Guardrail model judged and did not share it: a caution
            signal = CrisisSignal("caution", signal.categories)
        if request.role == "user" and is_crisis(value):
            crisis = self.crisis_notice(crisis_categories(value), "guardrail", request.locale)
        caution: Verdict = "caution" if signal.level == "caution" else "allow"
        return GuardrailCheckResponse(
            verdict=_worse(value.verdict, caution),
            risk_level=value.risk_level,
            categories=list(dict.fromkeys([*value.categories, *signal.categories])),
            rationale=value.rationale,
            source="cache" if answer.step == "cache" else "guardrail",
            guardrail_available=True,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
        )

    # Analyses --------------------------------------------------------------------------------

    async def analyze_genetic(self, request: AnalysisRequest) -> GeneticAnalysisResponse:
        crisis = await self._check_analysis(request, "genetic")
        answer = await self.genetic.analyze(request)
        return GeneticAnalysisResponse(
            analysis=answer.value,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
            notice=_analysis_notice(answer),
        )

    async def analyze_wellness(self, request: AnalysisRequest) -> WellnessAnalysisResponse:
        crisis = await self._check_analysis(request, "wellness")
        answer = await self.wellness.analyze(request)
        insights = with_crisis(answer.value) if crisis is not None else answer.value
        return WellnessAnalysisResponse(
            insights=insights,
            model=answer.model,
            fallback_used=answer.fallback_used,
            fallback_step=answer.step,
            crisis=crisis,
            notice=_analysis_notice(answer),
        )

    async def _check_analysis(self, request: AnalysisRequest, agent: str) -> CrisisNotice | None:
        """Validate, then run the crisis detector over everything the person wrote (a long history
        in a worker thread, so the event loop keeps serving meanwhile)."""
        items = len(request.messages) + len(request.check_ins)
        if items == 0:
            raise BadRequest("Send at least one item in `messages` or `check_ins`.")
        if items > self.safety.max_analysis_items:
            raise BadRequest(
                f"Send at most {self.safety.max_analysis_items} messages and check-ins "
                f"together (got {items})."
            )
        texts = [t.content for t in request.messages if t.role == "user"]
        texts += [c.note for c in request.check_ins if c.note]
        for i, turn in enumerate(request.messages):
            self._check_length(f"messages[{i}].content", turn.content)
        for i, check_in in enumerate(request.check_ins):
            if check_in.note:
                self._check_length(f"check_ins[{i}].note", check_in.note)
        if sum(map(len, texts)) > INLINE_DETECT_CHARS:
            signal = await asyncio.to_thread(detect_all, texts)
        else:
            signal = detect_all(texts)
        log.info(
            "%s analysis: %d messages, %d check-ins, detector %s",
            agent,
            len(request.messages),
            len(request.check_ins),
            signal.level,
        )
        if not signal.is_crisis:
            return None
        return self.crisis_notice(signal.categories, "crisis_detector", request.locale)

    # Validation ------------------------------------------------------------------------------

    def _check_text(self, field: str, text: str) -> None:
        if not text.strip():
            raise BadRequest(f"`{field}` is empty.")
        self._check_length(field, text)

    def _check_length(self, field: str, text: str) -> None:
        limit = self.safety.max_message_chars
        if len(text) > limit:
            raise BadRequest(f"`{field}` is {len(text)} characters long; the limit is {limit}.")

    def _check_history(self, turns: Sequence[Turn], *, field: str = "history") -> None:
        limit = self.safety.max_history_turns
        if len(turns) > limit:
            raise BadRequest(
                f"`{field}` has {len(turns)} turns; the limit is {limit}. "
                "Send the most recent ones."
            )
        for i, turn in enumerate(turns):
            self._check_length(f"{field}[{i}].content", turn.content)

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


def replace_reply(response: ConverseResponse, reply: str) -> ConverseResponse:
    return msgspec.structs.replace(response, reply=reply)


def _worse(a: Verdict, b: Verdict) -> Verdict:
    return max(a, b, key=VERDICT_ORDER.index)


def _analysis_notice(answer: Answer[Any]) -> str | None:
    if answer.step == "cache":
        return "No model could answer; this analysis was given before for the same history."
    if answer.step == "generic":
        return "No model could answer; this is a generic analysis with low confidence."
    return None
