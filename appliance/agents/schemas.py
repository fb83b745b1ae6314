"""The agents' shapes as msgspec structs: what the models must answer and what the routes speak.

Model outputs (`GuardrailVerdict`, `GeneticTraits`, `WellnessInsights`) are requested with their JSON
schema and validated on the way back, so nothing unvalidated leaves an agent. Enumerations list the
benign value in `examples`: msgspec sorts enum values, and a schema-driven engine that picks a
value without a model (the simulator) then picks the harmless one.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from msgspec import Meta, Struct

from appliance.config.schema import CrisisCategory, CrisisResource

# Model outputs ---------------------------------------------------------------------------------

Verdict = Literal["allow", "caution", "block", "crisis"]
RiskLevel = Literal["none", "low", "medium", "high", "critical"]
GuardrailCategory = Literal[
    "none",
    "suicide",
    "self_harm",
    "harm_to_others",
    "abuse",
    "sexual_content",
    "harassment",
    "hate",
    "illegal_activity",
    "medical_advice",
    "prompt_injection",
    "privacy",
    "unsupportive_reply",
]
# Every value bounded, so that guided decoding cannot produce an absurd one (an evidence count
# of 10^34 is valid JSON for an unbounded integer) nor a string that runs into max_tokens.
# Scores in hundredths: a schema-driven decoder given only a range may write digits without end.
Score = Annotated[float, Meta(ge=0.0, le=1.0, extra_json_schema={"multipleOf": 0.01})]
Count = Annotated[int, Meta(ge=0, le=1000)]
ShortText = Annotated[str, Meta(max_length=300)]

VERDICT_ORDER: tuple[Verdict, ...] = ("allow", "caution", "block", "crisis")
RISK_ORDER: tuple[RiskLevel, ...] = ("none", "low", "medium", "high", "critical")
# In answers: `unknown` when no verdict could be had and the policy decided.
ReportedRisk = Literal["none", "low", "medium", "high", "critical", "unknown"]


class Output(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of what a model must answer: closed objects, so guided decoding stays bounded."""


class GuardrailVerdict(Output, frozen=True, kw_only=True):
    """The Guardrail's classification of one message."""

    verdict: Annotated[Verdict, Meta(examples=["allow"])]
    risk_level: Annotated[RiskLevel, Meta(examples=["none"])]
    categories: Annotated[list[GuardrailCategory], Meta(max_length=6)] = []
    rationale: ShortText = ""


TraitName = Literal[
    "openness",
    "conscientiousness",
    "extraversion",
    "agreeableness",
    "emotional_stability",
    "resilience",
    "optimism",
    "self_reflection",
    "social_connection",
    "prefers_direct_language",
    "prefers_gentle_pacing",
    "prefers_practical_suggestions",
    "prefers_reflective_listening",
]


class Trait(Output, frozen=True, kw_only=True):
    name: TraitName
    # Where the person sits on the trait, 0 (low) to 1 (high).
    score: Score
    # How many of the given messages bear on it.
    evidence_count: Count
    confidence: Score


class GeneticTraits(Output, frozen=True, kw_only=True):
    """Stable traits and preferences, for personalising Kai; only what the evidence supports."""

    # Asked of the model as an object keyed by trait name, so that guided decoding cannot name a
    # trait twice (a list schema cannot forbid it); see `json_output.keyed_lists`.
    keyed_lists: ClassVar[dict[str, str]] = {"traits": "name"}

    traits: Annotated[list[Trait], Meta(max_length=len(TraitName.__args__))] = []
    overall_confidence: Score = 0.0
    summary: ShortText = ""

    def __post_init__(self) -> None:
        names = [trait.name for trait in self.traits]
        if len(names) != len(set(names)):
            raise ValueError("each trait may appear once")


PatternName = Literal[
    "stable_mood",
    "improving_mood",
    "low_mood",
    "declining_mood",
    "mood_swings",
    "anxiety",
    "stress",
    "sleep_disruption",
    "low_energy",
    "social_withdrawal",
    "irritability",
    "hopelessness",
    "positive_coping",
    "social_support",
]
Trend = Literal["stable", "improving", "declining", "mixed", "insufficient_data"]
Urgency = Literal["none", "low", "medium", "high", "urgent"]
ActionKind = Literal[
    "none",
    "check_in",
    "encourage_routine",
    "suggest_coping_skill",
    "suggest_social_connection",
    "suggest_professional_support",
    "crisis_support",
]
URGENCY_ORDER: tuple[Urgency, ...] = ("none", "low", "medium", "high", "urgent")


class Pattern(Output, frozen=True, kw_only=True):
    name: PatternName
    description: ShortText = ""
    evidence_count: Count
    confidence: Score


class SuggestedAction(Output, frozen=True, kw_only=True):
    kind: Annotated[ActionKind, Meta(examples=["none"])]
    # What Kai could say or offer, in one or two gentle sentences.
    message: ShortText = ""


class WellnessInsights(Output, frozen=True, kw_only=True):
    """Patterns across check-ins or messages, the trend, and one proactive step."""

    patterns: Annotated[list[Pattern], Meta(max_length=8)] = []
    trend: Annotated[Trend, Meta(examples=["stable"])]
    suggested_action: SuggestedAction
    urgency: Annotated[Urgency, Meta(examples=["none"])]


# Requests --------------------------------------------------------------------------------------

FallbackStep = Literal["model", "fallback_model", "cache", "generic", "crisis_protocol"]
# Who decided a verdict: the deterministic phrase lists (`crisis_detector`), the crisis classifier
# (embeddings and a trained head, used when the Guardrail model cannot judge), the Guardrail model,
# a cached Guardrail verdict, or the configured policy because the Guardrail could not answer.
SafetySource = Literal["crisis_detector", "classifier", "guardrail", "cache", "policy"]
CrisisSource = Literal["crisis_detector", "classifier", "guardrail"]
Policy = Literal["fail_closed", "fail_open"]


class Body(Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of request and response bodies."""


class Turn(Body, frozen=True, kw_only=True):
    """One earlier message of the conversation."""

    role: Literal["user", "assistant"]
    content: str


class ConverseRequest(Body, frozen=True, kw_only=True):
    """One conversation turn: the person's new message and the turns before it."""

    message: str
    history: list[Turn] = []
    # A locale for this turn's crisis resources; defaults to the deployment's.
    locale: str | None = None


class GuardrailCheckRequest(Body, frozen=True, kw_only=True):
    """A text to classify: a person's message (`user`) or a reply about to be shown (`assistant`)."""

    text: str
    role: Literal["user", "assistant"] = "user"
    context: list[Turn] = []
    locale: str | None = None


class CheckIn(Body, frozen=True, kw_only=True):
    """A mood check-in as the app records it; scales run 1 (low) to 10 (high)."""

    at: str
    mood: Annotated[int, Meta(ge=1, le=10)] | None = None
    energy: Annotated[int, Meta(ge=1, le=10)] | None = None
    anxiety: Annotated[int, Meta(ge=1, le=10)] | None = None
    sleep_hours: Annotated[float, Meta(ge=0, le=24)] | None = None
    note: str | None = None


class AnalysisRequest(Body, frozen=True, kw_only=True):
    """A history to analyse: messages, check-ins, or both (at least one item)."""

    messages: list[Turn] = []
    check_ins: list[CheckIn] = []
    locale: str | None = None


# Responses -------------------------------------------------------------------------------------


class CrisisNotice(Body, frozen=True, kw_only=True):
    """Set when the crisis detector or the Guardrail found a crisis; resources always included."""

    categories: list[CrisisCategory]
    source: CrisisSource
    locale: str
    resources: list[CrisisResource]


class Safety(Body, frozen=True, kw_only=True):
    """How the turn was judged and by what."""

    verdict: Verdict
    risk_level: ReportedRisk
    categories: list[str]
    source: SafetySource
    # Whether the Guardrail (model or cache) could judge; null when it was not asked (crisis).
    guardrail_available: bool | None
    policy_applied: Policy | None = None
    reply_checked: bool = False
    withheld: bool = False
    crisis: CrisisNotice | None = None


class ConverseResponse(Body, frozen=True, kw_only=True):
    reply: str
    safety: Safety
    # The model that wrote the reply (for a cached reply, the one that wrote it first).
    model: str | None
    fallback_used: bool
    fallback_step: FallbackStep
    # A plain sentence when something did not go the usual way.
    notice: str | None = None


class GuardrailCheckResponse(Body, frozen=True, kw_only=True):
    verdict: Verdict
    risk_level: ReportedRisk
    categories: list[str]
    rationale: str
    source: SafetySource
    guardrail_available: bool | None
    policy_applied: Policy | None = None
    model: str | None
    fallback_used: bool
    fallback_step: FallbackStep
    crisis: CrisisNotice | None = None
    notice: str | None = None


class GeneticAnalysisResponse(Body, frozen=True, kw_only=True):
    analysis: GeneticTraits
    model: str | None
    fallback_used: bool
    fallback_step: FallbackStep
    crisis: CrisisNotice | None = None
    notice: str | None = None


class WellnessAnalysisResponse(Body, frozen=True, kw_only=True):
    insights: WellnessInsights
    model: str | None
    fallback_used: bool
    fallback_step: FallbackStep
    crisis: CrisisNotice | None = None
    notice: str | None = None
