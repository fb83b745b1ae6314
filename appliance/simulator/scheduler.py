"""Sequence slots and the KV-cache budget: who runs, who waits (first in, first out).

A request runs when fewer than `max_num_seqs` run and its reservation fits in what is left of the
budget (or nothing else runs). The head of the queue blocks those behind it, as in vLLM's
first-come-first-served scheduler. Admission without waiting costs no await, which keeps the
zero-latency setting fast.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Scheduler:
    def __init__(self, max_num_seqs: int, kv_cache_tokens: int) -> None:
        self.max_num_seqs = max_num_seqs
        self.kv_cache_tokens = kv_cache_tokens
        self.running = 0
        self.reserved = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def kv_usage(self) -> float:
        return min(1.0, self.reserved / self.kv_cache_tokens)

    def try_admit(self, tokens: int) -> bool:
        """Take a slot at once when nobody waits and it fits; never blocks."""
        if self._waiters or not self._fits(tokens):
            return False
        self._take(tokens)
        return True

    async def admit(self, tokens: int) -> None:
        """Wait in line for a slot and `tokens` of budget; cancellation leaves the line cleanly."""
        if self.try_admit(tokens):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (tokens, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
            elif future.done() and not future.cancelled():
                self.release(tokens)  # granted just as it was cancelled
            raise

    def release(self, tokens: int) -> None:
        self.running -= 1
        self.reserved -= tokens
        self._wake()

    def _fits(self, tokens: int) -> bool:
        if self.running >= self.max_num_seqs:
            return False
        return self.running == 0 or self.reserved + tokens <= self.kv_cache_tokens

    def _take(self, tokens: int) -> None:
        self.running += 1
        self.reserved += tokens

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][0]):
            tokens, future = self._waiters.popleft()
            if future.done():  # its waiter was cancelled and has not run yet
                continue
            self._take(tokens)
            future.set_result(None)
