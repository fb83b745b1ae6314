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
        # A question someone asked stands when the answer is yes, or not given.
        ("my therapist asked if i wanted to kill myself and i said yes", "suicide"),
        ("the nurse asked if i was suicidal. yes, every single day", "suicide"),
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
        # Means at the neck, a plan with a vehicle, a place of danger, a farewell.
        ("the cable is around my neck now", "suicide"),
        ("I'm going to jump in front of the next train", "suicide"),
        ("I'm standing at the roof edge", "suicide"),
        ("i'm wading into the reservoir", "suicide"),
        ("i've written my own obituary", "suicide"),
        ("logging off forever, thanks for everything", "suicide"),
        ("I'm not going to be around much longer", "suicide"),
        ("i swallowed the whole blister pack", "suicide"),
        ("sh urges tonight", "self_harm"),
        ("I'll glass him if he shows up", "harm_to_others"),
        ("I have thoughts of suffocating my baby", "harm_to_others"),
        ("my abuser is back in the house", "abuse"),
        ("I wear a scarf to hide what my husband did", "abuse"),
        ("I relapsed today after two years clean from self harm", "self_harm"),
        # Passive wishes and burden, farewells, means and intrusive harm.
        ("every night I ask god please don't let me wake up", "suicide"),
        ("i pray not to see tomorrow", "suicide"),
        ("honestly i want to not be alive anymore", "suicide"),
        ("my life insurance would pay off the house for them", "suicide"),
        ("this is the last coffee i'll ever make", "suicide"),
        ("i finished my last letter tonight", "suicide"),
        ("the ligature is tied", "suicide"),
        ("i did something stupid with all my tablets", "suicide"),
        ("after my exam tomorrow i'm going to step in front of a bus", "suicide"),
        ("my fresh cuts won't stop bleeding", "self_harm"),
        ("hiding the burns under my hoodie", "self_harm"),
        ("i keep picturing myself shaking the baby", "harm_to_others"),
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
        # A finished episode, named as finished, even on its anniversary.
        "I overdosed in 2019, I'm 27 now and doing well",
        "I used to self harm, I've been clean from it for two years today",
        "i was suicidal in my late teens and i'm glad i stayed",
        "I'm writing my own eulogy for a class assignment",
        # Told from afterwards, in the ways people tell it.
        "i tried to kill myself at 19. eight years later i'm a paramedic",
        "my self harm is in remission, two years now",
        "i was suicidal for most of my teens and i barely recognise that girl",
        "i overdosed in my first year and therapy really helped",
        "looking back, i wanted to die every day that winter",
        "the self harm marks on my legs have been healed for years",
        "it's four years today since i tried to end my life and i feel lucky to still be here",
        # A figure of speech set against something trivial.
        "I'd sooner jump off a cliff than sit through another budget meeting",
        "id rather jump off a bridge than do karaoke at the work party",
        "i self harmed at school, and i've been well for 15 years now",
        # Past and safe now, though the safety is said first ("I'm safe" is a denial as well).
        "the scar from when he choked me is barely visible now. i'm safe, he's long gone",
        "today it's 1000 days since i last hurt myself",
        "i think about the summer i tried to end it whenever i smell cut grass",
        # A question someone asked, answered no.
        "my gp asked if i ever feel like hurting myself and i said no",
        "the nurse asked whether i'm suicidal and honestly no",
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
        "see you on the other side of the exams",
        "we paddled in the sea up to our knees",
        "i think i overdosed on caffeine, four espressos before ten",
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


@pytest.mark.parametrize(
    "text",
    [
        "I would rather jump off a bridge than go on like this",
        "i'd sooner jump off the roof than face tomorrow",
        "I'm closer to jumping off the bridge than ever",
        "i overdosed on my tablets",
        "the summer i tried to end it was awful and now i want to end it again",
        "it has been 30 days since i last cut and tonight i cut myself again",
        "I overdosed on the sleeping pills an hour ago",
    ],
)
def test_a_comparison_with_living_or_an_overdose_on_medicine_stays_a_crisis(text: str) -> None:
    assert detect(text).level == "crisis"
