"""Generic messages: fixed, fitting the situation, and the crisis reply always with resources."""

from __future__ import annotations

from appliance.agents.crisis import CrisisSignal
from appliance.agents.fallbacks import (
    crisis_reply,
    genetic_generic,
    kai_message,
    mood_trend,
    wellness_generic,
)
from appliance.agents.resources import DEFAULT_RESOURCES
from appliance.agents.schemas import CheckIn

US = list(DEFAULT_RESOURCES["en-US"])


def check_ins(*moods: int, sleep: float | None = None) -> list[CheckIn]:
    return [
        CheckIn(at=f"2024-05-{i + 1:02d}", mood=m, sleep_hours=sleep) for i, m in enumerate(moods)
    ]


def test_the_crisis_reply_lists_every_resource_it_is_given() -> None:
    text = crisis_reply(["suicide"], US[:3])
    for resource in US[:3]:
        assert resource.contact in text
    assert "988" in text and "emergency" in text.lower()
    assert crisis_reply(["abuse"], US).startswith("Thank you for trusting me")


def test_kai_messages_fit_the_situation() -> None:
    none = CrisisSignal("none")
    assert kai_message("unavailable", none, US) != kai_message("withheld", none, US)
    assert kai_message("withheld", none, US, first_turn=True).startswith("Hi")
    assert "988" not in kai_message("unavailable", none, US)
    caution = CrisisSignal("caution", ("suicide",))
    assert "988" in kai_message("unavailable", caution, US)


def test_mood_trend_from_check_ins() -> None:
    assert mood_trend(check_ins(7, 6)) == "insufficient_data"
    assert mood_trend(check_ins(7, 7, 6, 5, 4, 3)) == "declining"
    assert mood_trend(check_ins(3, 4, 5, 6, 7, 8)) == "improving"
    assert mood_trend(check_ins(5, 6, 5, 5, 6, 5)) == "stable"


def test_generic_wellness_reads_the_numbers() -> None:
    insights = wellness_generic(check_ins(6, 5, 4, 3, 3, 2, sleep=5.0))
    names = {p.name for p in insights.patterns}
    assert {"declining_mood", "low_mood", "sleep_disruption"} <= names
    assert insights.trend == "declining"
    assert insights.suggested_action.kind == "check_in"
    assert insights.urgency == "low"
    calm = wellness_generic(check_ins(7, 8, 7, sleep=8.0))
    assert (calm.patterns, calm.urgency, calm.suggested_action.kind) == ([], "none", "none")
    better = wellness_generic(check_ins(3, 5, 7))
    assert [p.name for p in better.patterns] == ["improving_mood"]
    assert better.urgency == "none"


def test_generic_genetic_claims_nothing() -> None:
    traits = genetic_generic()
    assert traits.traits == [] and traits.overall_confidence == 0.0
