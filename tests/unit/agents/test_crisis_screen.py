"""The phrase lists' RE2 screen: it must match wherever a phrase matches (it only ever proves
"nothing here"), so the detector with it says exactly what the detector without it says."""

from __future__ import annotations

import random
import re

import pytest

from appliance.agents import crisis
from appliance.agents.normalise import normalise
from appliance.agents.screen import compile_screen, without_lookarounds
from benchmarks.crisis_data import load

PYTHON_ANY = re.compile("|".join(f"(?:{p})" for p in crisis.PHRASES))


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"a(?! (?:with|b))c", "ac"),
        (r"(?<!not )kill", "kill"),
        (r"x(?=y)z", "xz"),
        (r"[(?!]d\(?!e", r"[(?!]d\(?!e"),  # in a class or escaped, not a lookaround
        (r"a(?<=[)])b", "ab"),
        (r"pills?\b(?! (?:this morning|as (?:prescribed|told)))", r"pills?\b"),
    ],
)
def test_lookarounds_are_removed_and_nothing_else(pattern: str, expected: str) -> None:
    assert without_lookarounds(pattern) == expected


def _clauses() -> list[str]:
    texts = [turn for example in load("train") + load("dev") for turn in example.turns]
    out = [clause for text in texts for clause in normalise(text)]
    # Random clauses from the phrases' own words, so many of them come near a phrase.
    words = sorted({w for p in crisis.PHRASES for w in re.findall(r"[a-z']+", p)})
    rng = random.Random(13)
    out += [" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(20_000)]
    return out


def test_the_screen_matches_wherever_a_phrase_matches() -> None:
    screen = compile_screen(crisis.PHRASES)
    clauses = _clauses()
    matched = [c for c in clauses if PYTHON_ANY.search(c)]
    assert len(matched) > 1_000  # the check is not vacuous
    assert [c for c in matched if screen.search(c) is None] == []
    # And it is a screen: most clauses that match no phrase are let go at once.
    unmatched = [c for c in clauses if not PYTHON_ANY.search(c)]
    assert sum(screen.search(c) is None for c in unmatched) > 0.9 * len(unmatched)


def test_the_detector_says_the_same_with_and_without_the_screen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    texts = [turn for example in load("train") + load("dev") for turn in example.turns]
    screened = [crisis.detect(t) for t in texts]
    monkeypatch.setattr(crisis, "_SCREEN", _NoScreen())  # every clause read by the lists
    assert [crisis.detect(t) for t in texts] == screened
    assert sum(s.is_crisis for s in screened) > 300


class _NoScreen:
    def search(self, text: str) -> object:
        return text


def test_clauses_screened_together_are_screened_as_each_alone() -> None:
    screen = compile_screen(crisis.PHRASES)
    clauses = _clauses()
    matched = [c for c in clauses if PYTHON_ANY.search(c)]
    rng = random.Random(17)
    # Half the groups hold a matching clause somewhere among random ones, whatever share of the
    # corpus matches; the other half are drawn at random.
    groups = [[*rng.sample(clauses, rng.randint(1, 5)), rng.choice(matched)] for _ in range(3_000)]
    for group in groups:
        rng.shuffle(group)
    groups += [rng.sample(clauses, rng.randint(2, 6)) for _ in range(3_000)]
    matching = [g for g in groups if any(PYTHON_ANY.search(c) for c in g)]
    assert len(matching) >= 3_000  # the check is not vacuous
    assert [g for g in matching if screen.search("\n".join(g)) is None] == []
    # A phrase anchored at a clause's end is found at the end of a clause that is not the last.
    assert screen.search("i wrote notes for after\nsee you") is not None
