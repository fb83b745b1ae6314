"""The crisis protocol and the crisis screen: what every route gives a person in crisis, and how it
finds them, with no model needed for either.

`CrisisProtocol` builds the crisis notice with the locale's resources and the replies that carry
it, and counts them by what found the crisis (counts only, never any text). `CrisisScreen` runs
the layered detection (`detector.py`) off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from appliance.agents.crisis import CrisisSignal, detect_all
from appliance.agents.detect_worker import DetectWorker
from appliance.agents.detector import Detection
from appliance.agents.fallbacks import crisis_reply
from appliance.agents.resources import Resources
from appliance.agents.schemas import (
    ConverseResponse,
    CrisisNotice,
    CrisisSource,
    GuardrailCheckResponse,
    ReportedRisk,
    Safety,
    Turn,
)
from appliance.config.schema import CrisisCategory, CrisisResource

log = logging.getLogger("appliance.agents")
# Up to this much text the phrase lists run on the event loop (about a millisecond per 4,000 chars).
INLINE_DETECT_CHARS = 16_000


class CrisisProtocol:
    """The crisis notice, its reply, and the turn and check responses that carry it."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources
        # Crisis-protocol replies given, by what found the crisis: counts only, never any text.
        self.replies: dict[str, int] = {}

    def notice(
        self, categories: Sequence[CrisisCategory], source: CrisisSource, locale: str | None
    ) -> CrisisNotice:
        """The resources for the crisis found, in the locale asked for; counted as given."""
        self.replies[source] = self.replies.get(source, 0) + 1
        chosen = self.resources.locale(locale)
        cats: list[CrisisCategory] = list(dict.fromkeys(categories)) or ["suicide"]
        return CrisisNotice(
            categories=cats,
            source=source,
            locale=chosen,
            resources=self.resources.for_categories(chosen, cats),
        )

    def text(self, notice: CrisisNotice) -> str:
        """The crisis reply a person reads."""
        return crisis_reply(notice.categories, notice.resources)

    def resources_for(self, locale: str | None, signal: CrisisSignal) -> list[CrisisResource]:
        """The locale's resources for what the detector saw, for the line a reply may carry."""
        return self.resources.for_categories(self.resources.locale(locale), signal.categories)

    def turn(
        self, notice: CrisisNotice, *, risk: ReportedRisk, available: bool | None
    ) -> ConverseResponse:
        """A conversation turn answered with the crisis protocol instead of Kai."""
        log.warning(
            "converse: crisis (%s, %s); crisis protocol with %d resources for %s",
            ",".join(notice.categories),
            notice.source,
            len(notice.resources),
            notice.locale,
        )
        return ConverseResponse(
            reply=self.text(notice),
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

    def check(
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
            crisis=self.notice(signal.categories, source, locale),
            notice=down,
        )


class CrisisScreen:
    """The layered crisis detection of a person's words, kept off a busy event loop."""

    def __init__(self, worker: DetectWorker) -> None:
        self.worker = worker

    async def detect(self, text: str, history: Sequence[Turn] = ()) -> Detection:
        """The layered crisis detection of a person's newest message with their last turns."""
        return await self.detect_in(text, [t.content for t in history if t.role == "user"])

    async def detect_in(self, text: str, context: Sequence[str]) -> Detection:
        """`context`: the person's earlier messages, oldest first. Off the event loop, on the
        detection thread (see `detect_worker`)."""
        return await self.worker.detect(text, context)

    async def phrases_in(self, texts: list[str]) -> CrisisSignal:
        """The phrase lists over everything a person wrote: a long history in a worker thread,
        so the event loop keeps serving meanwhile."""
        if sum(map(len, texts)) > INLINE_DETECT_CHARS:
            return await asyncio.to_thread(detect_all, texts)
        return detect_all(texts)
