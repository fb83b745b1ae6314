"""The deterministic crisis detector: crisis statements, denials, idioms and ordinary talk."""

from __future__ import annotations

import pytest

from appliance.agents.crisis import CrisisSignal, detect, detect_all
from appliance.agents.normalise import normalise


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("I want to kill myself", "suicide"),
        ("i'm going to end my life tonight", "suicide"),
        ("I just want to end it all", "suicide"),
        ("I've been feeling suicidal for weeks", "suicide"),
        ("I dont wanna live anymore", "suicide"),
        ("I wish I was dead", "suicide"),
        ("Everyone would be better off without me", "suicide"),
        ("No one would care if I killed myself", "suicide"),
        ("I have no reason to live", "suicide"),
        ("I can't stop thinking about killing myself", "suicide"),
        ("Nothing would stop me from killing myself", "suicide"),
        ("I'm going to take all my pills", "suicide"),
        ("kms", "suicide"),
        ("I want to k1ll mys3lf", "suicide"),
        ("I WANT TO DIEEEE", "suicide"),
        ('"I want to kill myself"', "suicide"),
        ("i w@nt to d1e", "suicide"),
        ("I\u2019m not sure I want to live", "suicide"),
        ("I keep hurting myself when I'm upset", "self_harm"),
        ("I started cutting again", "self_harm"),
        ("I've been self-harming", "self_harm"),
        ("I'm going to kill him", "harm_to_others"),
        ("I want to hurt someone", "harm_to_others"),
        ("I'm bringing a gun to school tomorrow", "harm_to_others"),
        ("My dad hits me when he's drunk", "abuse"),
        ("my stepfather touched me", "abuse"),
        ("I was raped last year", "abuse"),
        ("I'm scared to go home", "abuse"),
        ("He threatened to kill me", "abuse"),
    ],
)
def test_crisis_statements_are_crisis(text: str, category: str) -> None:
    signal = detect(text)
    assert signal.level == "crisis"
    assert category in signal.categories


@pytest.mark.parametrize(
    "text",
    [
        "I would never hurt myself",
        "I'm not going to kill myself, don't worry",
        "I don't want to die",
        "I'm not suicidal, just tired",
        "I have no plans to hurt myself",
        "I cut myself shaving this morning",
        "I'm killing myself studying for this exam",
        "I could kill him for eating my lunch",
        "I feel so hopeless lately",
        "I can't take it anymore",
    ],
)
def test_denials_and_softened_statements_are_at_most_caution(text: str) -> None:
    assert detect(text).level == "caution"


@pytest.mark.parametrize(
    "text",
    [
        "this homework is killing me",
        "my feet are killing me after that hike",
        "I'm dying to see that movie",
        "I nearly died laughing",
        "She killed it at the recital",
        "Let's kill some time before dinner",
        "I want to end things with my boyfriend",
        "He never hits me, he's lovely",
        "Can you help me plan my week?",
        "I had a good day today and slept well",
        "",
    ],
)
def test_idioms_and_ordinary_talk_are_not_crisis(text: str) -> None:
    assert detect(text).level == "none"


def test_a_denial_does_not_reach_across_clauses() -> None:
    signal = detect("I would never hurt myself, but sometimes I want to die")
    assert signal.level == "crisis"
    assert "suicide" in signal.categories


def test_detect_all_takes_the_worst_message() -> None:
    signal = detect_all(["a nice walk", "I feel hopeless", "my mom beats me"])
    assert signal == CrisisSignal("crisis", ("suicide", "abuse"))
    assert detect_all([]).level == "none"


def test_normalise_undoes_contractions_accents_and_stretching() -> None:
    assert normalise("I CAN\u2019T go on. Caf\u00e9 soooo gooood") == [
        "i can not go on",
        "cafe soo good",
    ]
