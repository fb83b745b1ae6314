"""The Guardrail rule, decided here once: what a turn or a check does with the Guardrail's verdict,
and what it does when the Guardrail cannot give one.

1. A crisis gets the crisis protocol whoever finds it: the Guardrail (a crisis verdict, or a block
   for a crisis category) or, when the Guardrail cannot judge, the crisis detector. The phrase
   lists need no rule: they decide before any model is asked.
2. When the Guardrail judges, its verdict stands, raised to the detector's caution; a detector
   crisis it judged and did not share is a caution. A block withholds Kai's reply (declined).
3. When it cannot judge (no model and no cached verdict), the configured policy
   (`safety.guardrail_unavailable`) decides: `fail_closed` makes the verdict a block and withholds
   Kai's reply; `fail_open` keeps the detector's caution or allow and releases the reply with a
   notice. Never a guessed verdict.
4. Kai's draft is judged too when `safety.check_reply` is set: a verdict that does not release it
   holds it back; no verdict is the same policy (fail_closed withholds, fail_open releases).
5. A reply that went out without a verdict on the message, or on the draft under fail_open,
   carries the line with the locale's resources; only a reply with every verdict the
   configuration asks for is cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from appliance.agents.calling import Answer
from appliance.agents.crisis import CrisisSignal
from appliance.agents.detector import Detection
from appliance.agents.guardrail import Unavailable, is_crisis, releases
from appliance.agents.schemas import (
    VERDICT_ORDER,
    CrisisSource,
    GuardrailVerdict,
    Policy,
    ReportedRisk,
    Safety,
    SafetySource,
    Verdict,
)
from appliance.config.schema import SafetyConfig

Judgement = Answer[GuardrailVerdict] | Unavailable
Withhold = Literal["withheld", "declined"]
ReplyAction = Literal["release", "withhold", "hold"]


@dataclass(frozen=True, slots=True)
class Judged:
    """The verdict on the person's message as the rule settled it."""

    verdict: Verdict
    risk_level: ReportedRisk
    categories: list[str]
    source: SafetySource
    available: bool
    policy: Policy | None = None  # the policy applied, when the Guardrail could not judge
    why: str | None = None  # why it could not

    def safety(
        self, *, policy: Policy | None, reply_checked: bool = False, withheld: bool = False
    ) -> Safety:
        """The response's account of how the turn was judged."""
        return Safety(
            verdict=self.verdict,
            risk_level=self.risk_level,
            categories=self.categories,
            source=self.source,
            guardrail_available=self.available,
            policy_applied=policy,
            reply_checked=reply_checked,
            withheld=withheld,
        )


@dataclass(frozen=True, slots=True)
class ReplyRuling:
    """What becomes of Kai's draft after its own check."""

    action: ReplyAction
    checked: bool = False  # a Guardrail verdict released it
    policy: Policy | None = None  # the policy applied, when no verdict could be had
    why: str | None = None  # why not
    verdict: Verdict | None = None  # the verdict that held it back


class GuardrailPolicy:
    """Every fail-open / fail-closed decision of the module docstring's rule, made in one place."""

    def __init__(self, safety: SafetyConfig) -> None:
        self.unavailable: Policy = safety.guardrail_unavailable
        self.checks_reply = safety.check_reply

    def crisis_source(self, answer: Judgement, detection: Detection) -> CrisisSource | None:
        """Who found a crisis that gets the protocol: the Guardrail when it judges, else the
        detector's classifier (rule 1); None when neither did."""
        if isinstance(answer, Unavailable):
            return "classifier" if detection.is_crisis else None
        return "guardrail" if is_crisis(answer.value) else None

    def heeded(self, answer: Judgement, signal: CrisisSignal) -> CrisisSignal:
        """The detector's signal once the Guardrail judged: a crisis it did not share is a
        caution (rule 2)."""
        if isinstance(answer, Answer) and signal.is_crisis:
            return CrisisSignal("caution", signal.categories)
        return signal

    def judge(self, answer: Judgement, signal: CrisisSignal) -> Judged:
        """The message's verdict: the Guardrail's raised to the detector's caution (rule 2), or
        the policy's when it cannot judge (rule 3)."""
        caution: Verdict = "caution" if signal.level == "caution" else "allow"
        if isinstance(answer, Unavailable):
            verdict: Verdict = "block" if self.unavailable == "fail_closed" else caution
            categories: list[str] = list(signal.categories)
            return Judged(
                verdict, "unknown", categories, "policy", False, self.unavailable, answer.reason
            )
        value = answer.value
        return Judged(
            worse(value.verdict, caution),
            value.risk_level,
            list(value.categories),
            "cache" if answer.step == "cache" else "guardrail",
            True,
        )

    def withholds(self, judged: Judged) -> Withhold | None:
        """Whether Kai's reply is withheld before its draft is read: fail_closed without a
        verdict (rule 3), or the Guardrail's block (rule 2)."""
        if not judged.available and judged.policy == "fail_closed":
            return "withheld"
        if judged.available and judged.verdict == "block":
            return "declined"
        return None

    def on_reply(self, answer: Judgement | None) -> ReplyRuling:
        """Kai's draft after its check (rule 4); `answer` None when the check is off."""
        if answer is None:
            return ReplyRuling("release")
        if isinstance(answer, Unavailable):
            action: ReplyAction = "withhold" if self.unavailable == "fail_closed" else "release"
            return ReplyRuling(action, policy=self.unavailable, why=answer.reason)
        if not releases(answer.value):
            return ReplyRuling("hold", verdict=answer.value.verdict)
        return ReplyRuling("release", checked=True)

    def caches(self, judged: Judged, ruling: ReplyRuling) -> bool:
        """Only a reply with every verdict the configuration asks for is cached (rule 5)."""
        return judged.available and (ruling.checked or not self.checks_reply)

    def unjudged(self, judged: Judged, applied: Policy | None = None) -> bool:
        """Whether a reply goes out without a verdict it needed, and so carries the line with
        the locale's resources (rule 5)."""
        return not judged.available or applied == "fail_open"


def worse(a: Verdict, b: Verdict) -> Verdict:
    """The graver of two verdicts."""
    return max(a, b, key=VERDICT_ORDER.index)
