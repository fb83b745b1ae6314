"""The last fallback step: generic, context-aware messages per agent, and the crisis reply.

Every text here is fixed and reviewable; none is written by a model and none repeats the person's
words. "Context-aware" means the message fits why it is given (a model is down, the safety check
could not run, a request was declined, a crisis) and what the crisis detector saw, and, for
Wellness, what the check-ins' own numbers show.
"""

from __future__ import annotations

from collections.abc import Sequence
from statistics import fmean

from appliance.agents.crisis import CrisisSignal
from appliance.agents.schemas import (
    CheckIn,
    GeneticTraits,
    Pattern,
    PatternName,
    SuggestedAction,
    Trend,
    Urgency,
    WellnessInsights,
)
from appliance.config.schema import CrisisCategory, CrisisResource

# Kai ---------------------------------------------------------------------------------------------

_KAI_UNAVAILABLE = (
    "Thank you for telling me this. I'm having trouble finding my words right now, and I'd rather "
    "not give you a rushed answer. Could you try again in a little while? I'm still here."
)
_KAI_WITHHELD = (
    "I want to answer you with care, and I can't do that properly at this moment. Could you give "
    "me a little time and try again? I'm still here."
)
_KAI_DECLINED = (
    "That's not something I can help with, but I'm here to listen. Would you like to tell me a "
    "bit more about what's going on for you?"
)
_KAI_REPLY_HELD = (
    "I want to be thoughtful about how I answer that. Could you tell me a little more about how "
    "you're feeling right now?"
)
_KAI_FIRST_TURN = "Hi, I'm glad you reached out. "


def kai_message(
    situation: str,
    signal: CrisisSignal,
    resources: Sequence[CrisisResource],
    *,
    first_turn: bool = False,
    guardrail_down: bool = False,
) -> str:
    """Kai's generic reply. `situation`: unavailable | withheld | declined | reply_held.

    It carries a short line with the locale's resources when the crisis detector is unsure
    (caution) and whenever the Guardrail could not judge the message (`guardrail_down`)."""
    text = {
        "unavailable": _KAI_UNAVAILABLE,
        "withheld": _KAI_WITHHELD,
        "declined": _KAI_DECLINED,
        "reply_held": _KAI_REPLY_HELD,
    }[situation]
    if first_turn and situation in ("unavailable", "withheld"):
        text = _KAI_FIRST_TURN + text
    return with_offer(text, signal, resources, guardrail_down=guardrail_down)


def with_offer(
    text: str,
    signal: CrisisSignal,
    resources: Sequence[CrisisResource],
    *,
    guardrail_down: bool = False,
) -> str:
    """`text` with a gentle offer of the locale's resources appended, when the detector saw
    caution or the Guardrail could not judge; else `text` unchanged."""
    line = resource_offer(resources) if signal.level == "caution" or guardrail_down else ""
    return f"{text} {line}" if line else text


def resource_offer(resources: Sequence[CrisisResource]) -> str:
    """One short, gentle line: a crisis line of the locale (not the emergency number first)."""
    if not resources:
        return ""
    line = next((r for r in resources if r.name != "Emergency services"), resources[0])
    return f"If things start to feel unsafe, {line.name} is there any time: {line.contact}."


# Crisis ------------------------------------------------------------------------------------------

_CRISIS_OPENING: dict[CrisisCategory, str] = {
    "suicide": (
        "I'm really glad you told me. It sounds like you're carrying something very heavy right "
        "now, and you don't have to carry it alone. Your safety matters most."
    ),
    "self_harm": (
        "Thank you for telling me. It sounds like you're in a lot of pain right now, and you "
        "deserve support and care. Your safety matters most."
    ),
    "harm_to_others": (
        "Thank you for telling me what's going on. It sounds like things feel really intense "
        "right now. If you can, give yourself some distance from the situation and from anything "
        "that could be used to hurt someone."
    ),
    "abuse": (
        "Thank you for trusting me with this. What is happening to you is not your fault, and "
        "you deserve to be safe."
    ),
}
_CRISIS_ORDER: tuple[CrisisCategory, ...] = ("suicide", "self_harm", "abuse", "harm_to_others")
_CRISIS_DANGER = (
    "If you or anyone else is in danger right now, please contact emergency services straight "
    "away. You can also reach people who are ready to listen and help, right now:"
)
_CRISIS_CLOSING = (
    "If you can, let someone you trust know how you're feeling, or stay near other people for "
    "now. I'm here, and I'm glad to keep talking with you."
)


def crisis_reply(categories: Sequence[CrisisCategory], resources: Sequence[CrisisResource]) -> str:
    """The safe, supportive reply for a crisis: an opening for the most serious category found,
    then every resource, then an invitation to keep talking. Resources are always present."""
    first: CrisisCategory = next((c for c in _CRISIS_ORDER if c in categories), "suicide")
    lines = [_CRISIS_OPENING[first], "", _CRISIS_DANGER]
    lines += [f"- {resource_line(r)}" for r in resources]
    lines += ["", _CRISIS_CLOSING]
    return "\n".join(lines)


def resource_line(resource: CrisisResource) -> str:
    text = f"{resource.name}: {resource.contact}"
    if resource.hours:
        text += f" ({resource.hours})"
    if resource.url:
        text += f", {resource.url}"
    return text


# Genetic -----------------------------------------------------------------------------------------


def genetic_generic() -> GeneticTraits:
    """No model could analyse: no traits claimed, zero confidence, and a summary that says so."""
    return GeneticTraits(
        traits=[],
        overall_confidence=0.0,
        summary="No analysis was possible right now; no traits were inferred.",
    )


# Wellness ----------------------------------------------------------------------------------------

# (pattern, check-in field, low values count?, threshold, description) for the numbers-only analysis.
_RULES: tuple[tuple[PatternName, str, bool, float, str], ...] = (
    ("low_mood", "mood", True, 4.0, "Mood ratings have mostly been low."),
    ("anxiety", "anxiety", False, 7.0, "Anxiety ratings have mostly been high."),
    ("low_energy", "energy", True, 4.0, "Energy ratings have mostly been low."),
    ("sleep_disruption", "sleep_hours", True, 6.0, "Sleep has mostly been short."),
)
_TREND_STEP = 1.0  # change in mean mood (1-10) between the first and last third that counts
_RULE_CONFIDENCE = 0.3


def wellness_generic(check_ins: Sequence[CheckIn]) -> WellnessInsights:
    """What the check-ins' numbers alone show, with low confidence: a trend from mood, patterns
    from averages, and a gentle step. Used when no model could analyse."""
    trend = mood_trend(check_ins)
    patterns = _patterns(check_ins, trend)
    concerns = [p for p in patterns if p.name != "improving_mood"]
    urgency: Urgency = "low" if concerns else "none"
    if trend == "declining" or any(p.name == "low_mood" for p in patterns):
        action = SuggestedAction(
            kind="check_in",
            message="It might help to gently check in about how the past few days have felt.",
        )
    elif any(p.name == "sleep_disruption" for p in patterns):
        action = SuggestedAction(
            kind="encourage_routine",
            message="A small, steady wind-down routine in the evening could help with rest.",
        )
    else:
        action = SuggestedAction(kind="none", message="")
    return WellnessInsights(
        patterns=patterns, trend=trend, suggested_action=action, urgency=urgency
    )


def mood_trend(check_ins: Sequence[CheckIn]) -> Trend:
    moods = [c.mood for c in check_ins if c.mood is not None]
    if len(moods) < 3:
        return "insufficient_data"
    third = max(1, len(moods) // 3)
    change = fmean(moods[-third:]) - fmean(moods[:third])
    if change >= _TREND_STEP:
        return "improving"
    if change <= -_TREND_STEP:
        return "declining"
    return "stable"


def _patterns(check_ins: Sequence[CheckIn], trend: Trend) -> list[Pattern]:
    out: list[Pattern] = []
    for name, field, low, limit, text in _RULES:
        values = [v for c in check_ins if (v := getattr(c, field)) is not None]
        if values and (fmean(values) <= limit if low else fmean(values) >= limit):
            out.append(
                Pattern(
                    name=name,
                    description=text,
                    evidence_count=len(values),
                    confidence=_RULE_CONFIDENCE,
                )
            )
    if trend in ("improving", "declining"):
        moods = [c.mood for c in check_ins if c.mood is not None]
        out.append(
            Pattern(
                name="improving_mood" if trend == "improving" else "declining_mood",
                description=f"Mood ratings are {trend} across the check-ins.",
                evidence_count=len(moods),
                confidence=_RULE_CONFIDENCE,
            )
        )
    return out
