"""A one-pass screen for the phrase lists: RE2 over every pattern with its lookarounds removed.

The crisis detector runs on every Kai request, and most messages match nothing. Python's `re`
tries each of the ~100 alternatives at every position of the text (about 8 µs for a short
sentence, 2 ms for a long message); RE2 runs them as one automaton in time linear in the text
(about 1 µs and 10 µs). RE2 has no lookarounds, so the screen drops them: a lookaround only ever
narrows where a pattern matches, so without it the screen matches wherever a phrase does, and
perhaps elsewhere. "No match" from the screen therefore proves that no phrase matches, and only
then is it trusted; anything it finds is decided by the phrase lists themselves, as before.

The phrase lists run on normalised clauses (ASCII lower-case words and spaces), where RE2's ASCII
`\\b` and `\\w` mean what Python's Unicode ones mean. The clauses of a message are screened at
once, joined by newlines; the screen is multi-line, so anchors hold at each clause's edges, and a
match that spans a newline can only be one more "maybe".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, cast

import re2

_LOOKAROUNDS = ("(?=", "(?!", "(?<=", "(?<!")


class Screen(Protocol):
    def search(self, text: str) -> object | None: ...


def without_lookarounds(pattern: str) -> str:
    """`pattern` with every lookaround group removed (escapes and character classes respected)."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(_LOOKAROUNDS, i):
            i = _group_end(pattern, i)
            continue
        step = _atom_end(pattern, i)
        out.append(pattern[i:step])
        i = step
    return "".join(out)


def _atom_end(pattern: str, i: int) -> int:
    """Where the escape or character class at `i` ends (one character otherwise)."""
    if pattern[i] == "\\":
        return i + 2
    if pattern[i] != "[":
        return i + 1
    j = i + 1
    if pattern.startswith("^", j):
        j += 1
    if pattern.startswith("]", j):  # a leading ] is a literal
        j += 1
    while pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _group_end(pattern: str, i: int) -> int:
    """The index just past the group that opens at `i`."""
    depth = 0
    j = i
    while True:
        ch = pattern[j]
        if ch in "\\[":
            j = _atom_end(pattern, j)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1


def compile_screen(patterns: Iterable[str]) -> Screen:
    """One RE2 expression matching wherever any of `patterns` matches."""
    options = re2.Options()
    options.max_mem = 64 << 20  # room for the automaton of ~100 alternatives
    # Multi-line, so that clauses can be screened joined by newlines: `$` and `^` then hold at
    # each clause's end and start as they do on the clause alone, as `\b` does at a newline.
    joined = "(?m)" + "|".join(f"(?:{without_lookarounds(p)})" for p in patterns)
    return cast(Screen, re2.compile(joined, options))
