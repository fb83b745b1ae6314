"""Spread a model's requests over its replicas: by load, keeping a conversation on one replica.

Several engines that serve the same model are replicas of it. `Balancer.order()` ranks them for one
request; the gateway tries them in that order (its breakers and admission per replica) before it
moves on to the next model of the chain.

- Load: the cost of a replica is its in-flight requests (counted here, whoever admits them) plus the
  one about to come, weighted by its saturation score: `(in_flight + 1) * (1 + saturation)`. Ties go
  round-robin, so idle replicas still take turns.
- Affinity: a request that carries a conversation key (the OpenAI `user` field, or the
  `X-Conversation-Id` header) goes to the key's own replica by rendezvous hashing, so vLLM's prefix
  cache of that conversation is reused, while that replica's saturation stays below `reroute_at`;
  past it the request is placed by load like any other. Rendezvous hashing moves only the keys of a
  replica that is added or removed.

The key is carried in a context variable, so the agent routes reach it without threading it
through every layer; it is hashed, never logged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from contextvars import ContextVar

from appliance.gateway.hooks import Permit

# The conversation key of the request being served (set by the API layer), or None.
conversation_key: ContextVar[str | None] = ContextVar("conversation_key", default=None)
CONVERSATION_HEADER = "x-conversation-id"


class Balancer:
    """In-flight counts and request counts per engine, and the replica order for a request."""

    def __init__(self, engine_ids: Sequence[str], *, sticky_below: float = 0.85) -> None:
        self.in_flight: dict[str, int] = dict.fromkeys(engine_ids, 0)
        # Requests each engine answered (the per-replica counter in /metrics).
        self.served: dict[str, int] = dict.fromkeys(engine_ids, 0)
        self.sticky_below = sticky_below
        # One turn counter per replica set, so models' requests interleaved do not skew ties.
        self._turns: dict[tuple[str, ...], int] = {}

    def order(
        self,
        replicas: Sequence[str],
        saturation: Callable[[str], float],
        key: str | None = None,
    ) -> list[str]:
        """The replicas in the order to try them for one request."""
        if len(replicas) == 1:
            return list(replicas)
        group = tuple(replicas)
        turn = self._turns[group] = self._turns.get(group, 0) + 1
        n = len(replicas)
        scores = {engine: saturation(engine) for engine in replicas}
        ranked = sorted(
            range(n),
            key=lambda i: (
                (self.in_flight[replicas[i]] + 1) * (1.0 + scores[replicas[i]]),
                (i - turn) % n,
            ),
        )
        ordered = [replicas[i] for i in ranked]
        if key:
            home = max(replicas, key=lambda engine: _rendezvous(key, engine))
            if scores[home] < self.sticky_below:
                ordered.remove(home)
                ordered.insert(0, home)
        return ordered

    def started(self, engine_id: str) -> None:
        self.in_flight[engine_id] += 1

    def finished(self, engine_id: str) -> None:
        self.in_flight[engine_id] -= 1

    def answered(self, engine_id: str) -> None:
        self.served[engine_id] += 1


def _rendezvous(key: str, engine_id: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{engine_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class TrackedPermit:
    """The admission's permit plus the balancer's in-flight count, released together once."""

    __slots__ = ("_balancer", "_engine", "_inner")

    def __init__(self, inner: Permit, balancer: Balancer, engine_id: str) -> None:
        self._inner: Permit | None = inner
        self._balancer = balancer
        self._engine = engine_id

    def release(self) -> None:
        if self._inner is None:
            return
        inner, self._inner = self._inner, None
        inner.release()
        self._balancer.finished(self._engine)
