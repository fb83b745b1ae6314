"""The response cache: the guide's "cached response for the same input" fallback step.

In memory, bounded (least recently used goes first), with a time to live. Keys are SHA-256 digests
of the agent and its canonical input, so neither the keys nor anything logged about them holds a
person's words; only a short digest prefix ever reaches the logs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

log = logging.getLogger("appliance.agents.cache")
T = TypeVar("T")
_encode = msgspec.json.Encoder(order="sorted").encode


def cache_key(agent: str, *parts: Any) -> str:
    """A digest of the agent and its input (msgspec-encodable values, key order ignored)."""
    digest = hashlib.sha256(agent.encode())
    for part in parts:
        digest.update(b"\x00")
        digest.update(_encode(part))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Cached(Generic[T]):
    value: T
    model: str | None
    stored_at: float


class ResponseCache:
    def __init__(
        self, *, ttl_s: float, size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._clock = clock
        self._items: OrderedDict[str, Cached[Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Cached[Any] | None:
        item = self._items.get(key)
        if item is None or self._clock() - item.stored_at > self.ttl_s:
            if item is not None:
                del self._items[key]
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        log.debug("cache hit %s", key[:12])
        return item

    def put(self, key: str, value: Any, *, model: str | None) -> None:
        self._items[key] = Cached(value, model, self._clock())
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def snapshot(self) -> dict[str, object]:
        return {
            "entries": len(self._items),
            "size": self.size,
            "ttl_s": self.ttl_s,
            "hits": self.hits,
            "misses": self.misses,
        }
