"""One conversation turn with Kai (`converse`), safe and well formed.

1. validate (length, history turns; roles are checked by the request struct);
2. crisis detection in layers (`detector.py`) over the message and the person's last turns: a
   phrase-list crisis gets the crisis protocol at once, with the locale's resources, whatever the
   models are doing;
3. the Guardrail on the person's message and Kai's draft run concurrently;
4. the Guardrail rule (`policy.py`) decides: a crisis -> crisis protocol; a block -> Kai's draft
   is dropped and a generic message given; unavailable -> the crisis classifier's crisis gets the
   crisis protocol, anything else the configured policy (fail closed by default), and every reply
   then carries a short line with the locale's resources. A classifier crisis the Guardrail model
   does not share, or its grey zone, is a caution: the reply carries that line too;
5. Kai's draft, or its cached reply, or its generic message (the guide's order);
6. by configuration, the Guardrail on Kai's draft; only then is it released (and cached).

Logs carry lengths, counts, verdicts and digests; never a person's words.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace

import msgspec

from appliance.agents.cache import ResponseCache, cache_key
from appliance.agents.calling import UNAVAILABLE, Answer, reason
from appliance.agents.crisis import CrisisSignal, detect
from appliance.agents.detector import Detection
from appliance.agents.fallbacks import kai_message, with_offer
from appliance.agents.guardrail import Guardrail, Unavailable, crisis_categories
from appliance.agents.kai import Kai
from appliance.agents.policy import GuardrailPolicy, Judged, Judgement, ReplyRuling
from appliance.agents.safety import CrisisProtocol, CrisisScreen
from appliance.agents.schemas import ConverseRequest, ConverseResponse, Turn
from appliance.agents.validation import RequestChecks
from appliance.config.schema import CrisisResource

log = logging.getLogger("appliance.agents")
Draft = Answer[str] | BaseException


class Conversation:
    """Kai's turn: the screen, the Guardrail and Kai's draft at once, then the Guardrail rule."""

    def __init__(
        self,
        *,
        kai: Kai,
        guardrail: Guardrail,
        cache: ResponseCache,
        screen: CrisisScreen,
        protocol: CrisisProtocol,
        policy: GuardrailPolicy,
        checks: RequestChecks,
    ) -> None:
        self.kai = kai
        self.guardrail = guardrail
        self.cache = cache
        self.screen = screen
        self.protocol = protocol
        self.policy = policy
        self.checks = checks

    async def converse(self, request: ConverseRequest) -> ConverseResponse:
        """One turn; a phrase-list crisis is answered before any model is asked."""
        self.checks.text("message", request.message)
        self.checks.history(request.history)
        signal = detect(request.message)  # the phrase lists: instant
        log.info(
            "converse: message of %d chars, %d history turns, phrase lists %s",
            len(request.message),
            len(request.history),
            signal.level,
        )
        if signal.is_crisis:
            notice = self.protocol.notice(signal.categories, "crisis_detector", request.locale)
            return self.protocol.turn(notice, risk="high", available=None)
        # The classifier runs while the Guardrail model judges: it adds nothing to a turn whose
        # Guardrail answers, and decides when the Guardrail cannot.
        classified = asyncio.create_task(self.screen.detect(request.message, request.history))
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
        draft: asyncio.Task[Draft],
    ) -> ConverseResponse:
        """The Guardrail's verdict on the message decides whether Kai's draft is read at all."""
        answer = await self.guardrail.classify(
            request.message, role="user", context=request.history
        )
        detection = await classified
        log.info("converse: detector %s (%s)", detection.level, detection.source)
        crisis = self._crisis(request, answer, detection)
        if crisis is not None:
            return crisis
        signal = self.policy.heeded(answer, detection.signal)
        judged = self.policy.judge(answer, signal)
        resources = self.protocol.resources_for(request.locale, signal)
        first = not request.history
        withheld = self._withheld_early(judged, signal, resources, first)
        if withheld is not None:
            return withheld
        outcome = await draft
        kai_key = cache_key("kai", [(t.role, t.content) for t in request.history], request.message)
        if isinstance(outcome, BaseException):
            return self._kai_fallback(judged, kai_key, outcome, signal, resources, first)
        released = await self._release(request, judged, outcome, kai_key, signal, resources)
        if released.fallback_step == "crisis_protocol" or released.safety.withheld:
            return released  # a generic message carries its own line of resources, once
        down = self.policy.unjudged(judged, released.safety.policy_applied)
        reply = with_offer(released.reply, signal, resources, guardrail_down=down)
        return released if reply == released.reply else replace_reply(released, reply)

    def _crisis(
        self, request: ConverseRequest, answer: Judgement, detection: Detection
    ) -> ConverseResponse | None:
        """The crisis protocol, when the rule says the Guardrail or the classifier found one."""
        source = self.policy.crisis_source(answer, detection)
        signal = detection.signal
        if source == "guardrail" and isinstance(answer, Answer):
            verdict = answer.value
            found = crisis_categories(verdict) or list(signal.categories)
            notice = self.protocol.notice(found, "guardrail", request.locale)
            return self.protocol.turn(notice, risk=verdict.risk_level, available=True)
        if source == "classifier" and isinstance(answer, Unavailable):
            log.info("converse: guardrail %s; the crisis classifier decides", answer.reason)
            notice = self.protocol.notice(signal.categories, "classifier", request.locale)
            return self.protocol.turn(notice, risk="high", available=False)
        return None

    def _withheld_early(
        self,
        judged: Judged,
        signal: CrisisSignal,
        resources: list[CrisisResource],
        first: bool,
    ) -> ConverseResponse | None:
        """A generic message instead of Kai's draft, when the rule withholds it unread."""
        kind = self.policy.withholds(judged)
        if kind == "withheld":
            down = self.policy.unjudged(judged)
            return self._withheld(
                judged,
                kai_message("withheld", signal, resources, first_turn=first, guardrail_down=down),
                f"The safety check could not run ({judged.why}); Kai's reply was withheld "
                "under the fail-closed policy.",
            )
        if kind == "declined":
            return self._withheld(
                judged,
                kai_message("declined", signal, resources),
                "The Guardrail declined this message; Kai's reply was withheld.",
            )
        return None

    async def _release(
        self,
        request: ConverseRequest,
        judged: Judged,
        draft: Answer[str],
        kai_key: str,
        signal: CrisisSignal,
        resources: list[CrisisResource],
    ) -> ConverseResponse:
        """Kai's draft after its own check, as the rule rules on it; cached only when allowed."""
        ruling = self.policy.on_reply(await self._check_reply(request, draft))
        if ruling.action == "withhold":
            return self._withheld(
                replace(judged, policy=ruling.policy),
                kai_message("withheld", signal, resources, guardrail_down=True),
                f"The safety check of Kai's reply could not run ({ruling.why}); "
                "the reply was withheld under the fail-closed policy.",
            )
        if ruling.action == "hold":
            log.warning("converse: Kai's draft held back (%s)", ruling.verdict)
            return self._withheld(
                judged,
                kai_message("reply_held", signal, resources),
                "The Guardrail held back Kai's draft; a generic message was given instead.",
                reply_checked=True,
            )
        if self.policy.caches(judged, ruling):
            self.cache.put(kai_key, draft.value, model=draft.model)
        policy = ruling.policy or judged.policy
        return ConverseResponse(
            reply=draft.value,
            safety=judged.safety(policy=policy, reply_checked=ruling.checked),
            model=draft.model,
            fallback_used=draft.fallback_used,
            fallback_step=draft.step,
            notice=_release_notice(judged, ruling),
        )

    async def _check_reply(self, request: ConverseRequest, draft: Answer[str]) -> Judgement | None:
        """The Guardrail on Kai's draft, with the conversation for context; None when off."""
        if not self.policy.checks_reply:
            return None
        context = [*request.history, Turn(role="user", content=request.message)]
        return await self.guardrail.classify(draft.value, role="assistant", context=context)

    def _kai_fallback(
        self,
        judged: Judged,
        kai_key: str,
        exc: BaseException,
        signal: CrisisSignal,
        resources: list[CrisisResource],
        first: bool,
    ) -> ConverseResponse:
        """Kai could not answer: its cached reply for the same conversation, else a generic one."""
        why = reason(exc)
        cached = self.cache.get(kai_key)
        down = self.policy.unjudged(judged)
        if cached is not None:
            log.info("converse: Kai %s; cached reply %s", why, kai_key[:12])
            return ConverseResponse(
                reply=with_offer(cached.value, signal, resources, guardrail_down=down),
                safety=judged.safety(policy=judged.policy),
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
            safety=judged.safety(policy=judged.policy),
            model=None,
            fallback_used=True,
            fallback_step="generic",
            notice=f"Kai's models could not answer ({why}); this is a generic message.",
        )

    async def _draft(self, request: ConverseRequest) -> Draft:
        """Kai's draft, or why no model could give one (a task's result, never its exception)."""
        try:
            return await self.kai.draft(request.message, request.history)
        except UNAVAILABLE as exc:
            return exc

    def _withheld(
        self, judged: Judged, reply: str, notice: str, *, reply_checked: bool = False
    ) -> ConverseResponse:
        """A generic message in place of Kai's reply, saying why."""
        log.info("converse: reply withheld (%s, %s)", judged.verdict, judged.source)
        return ConverseResponse(
            reply=reply,
            safety=judged.safety(policy=judged.policy, reply_checked=reply_checked, withheld=True),
            model=None,
            fallback_used=True,
            fallback_step="generic",
            notice=notice,
        )


def _release_notice(judged: Judged, ruling: ReplyRuling) -> str | None:
    """What a reply released under fail_open says about the check that could not run."""
    if ruling.why is not None:
        return (
            f"The safety check of Kai's reply could not run ({ruling.why}); "
            "the reply was released under the fail-open policy."
        )
    if judged.policy == "fail_open" and not judged.available:
        return (
            f"The safety check could not run ({judged.why}); Kai's reply was released under "
            "the fail-open policy."
        )
    return None


def replace_reply(response: ConverseResponse, reply: str) -> ConverseResponse:
    """The same response with another reply text."""
    return msgspec.structs.replace(response, reply=reply)
