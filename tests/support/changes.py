"""Sequences of observed states, read as changes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def without_repeats(seen: Iterable[T]) -> list[T]:
    """`seen` with consecutive repeats dropped: a report of the same state again (a health check
    of a running engine, say) is not a change."""
    out: list[T] = []
    for item in seen:
        if not out or out[-1] != item:
            out.append(item)
    return out
