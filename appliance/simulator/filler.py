"""Synthetic answer text: a seeded word stream, never the user's words.

Each answer starts with the `[simulated] ` marker and continues with filler words from a fixed,
neutral vocabulary. The words are drawn once from `--seed`; a request picks its starting point from
a checksum of its messages, so the same request always gets the same answer. One word is one token.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

MARKER = "[simulated] "
_VOCABULARY = (
    "steady", "calm", "breath", "notice", "moment", "pause", "listen", "today", "small", "step",
    "kind", "space", "rest", "light", "water", "walk", "morning", "evening", "simple", "clear",
    "quiet", "patient", "open", "warm", "slow", "gentle", "ground", "feel", "name", "place",
    "time", "easy", "care", "friend", "plan", "again", "maybe", "often", "sometimes", "together",
    "before", "after", "around", "through", "with", "about", "here", "there", "still", "soft",
    "bright", "balance", "routine", "sleep", "energy", "focus", "thought", "pattern", "change",
    "hold", "return", "each", "comfort", "support", "wander", "settle", "ease", "brief",
)  # fmt: skip
_STREAM_LENGTH = 4096


class Filler:
    """The word stream for one seed."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        words = [rng.choice(_VOCABULARY) for _ in range(_STREAM_LENGTH)]
        self._seed = seed & 0xFFFFFFFF
        self._spaced = [" " + word for word in words] * 2
        self._bare = words

    def draw(self, texts: Iterable[str]) -> int:
        """A number fixed by the seed and the request's text, choosing length and words."""
        value = zlib.crc32(self._seed.to_bytes(4, "little"))
        for text in texts:
            value = zlib.crc32(text.encode("utf-8", "surrogatepass"), value)
        return value

    def tokens(self, draw: int, count: int) -> list[str]:
        """`count` tokens: the marker, then words (each but the first with its leading space)."""
        if count <= 0:
            return []
        tokens = [MARKER]
        start = draw % _STREAM_LENGTH
        remaining = count - 1
        while remaining > 0:
            take = min(remaining, _STREAM_LENGTH)
            chunk = self._spaced[start : start + take]
            if len(tokens) == 1:
                chunk[0] = self._bare[start]
            tokens.extend(chunk)
            remaining -= take
        return tokens


def json_tokens(text: str, chars_per_token: int) -> list[str]:
    """A JSON answer cut into token-sized pieces, so streaming and counting treat it like text."""
    return [text[i : i + chars_per_token] for i in range(0, len(text), chars_per_token)] or [""]
