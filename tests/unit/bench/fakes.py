"""A stand-in for `StreamClient`: answers after a modelled delay, counting what is in flight."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from appliance.bench.client import Target
from appliance.bench.records import Sample
from appliance.bench.workloads import BenchRequest


class FakeClient:
    """`latency(phase)` gives a request's end-to-end seconds (modelled, not slept)."""

    def __init__(
        self,
        latency: Callable[[int], float] = lambda n: 1.0,
        *,
        error: str | None = None,
        pause_s: float = 0.002,
    ) -> None:
        self.latency = latency
        self.error = error
        self.pause_s = pause_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.sent: list[tuple[str, int]] = []
        self.started = asyncio.Event()

    async def send(
        self, target: Target, req: BenchRequest, *, phase: int, seq: int, t0: float
    ) -> Sample:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.sent.append((req.agent, seq))
        self.started.set()
        try:
            await asyncio.sleep(self.pause_s)
            e2el = self.latency(phase)
        finally:
            self.in_flight -= 1
        tokens = req.max_tokens
        return Sample(
            phase=phase,
            seq=seq,
            agent=req.agent,
            model=target.model_name,
            start_s=0.0,
            ttft_s=0.1 * e2el,
            e2el_s=e2el,
            itl_s=(0.9 * e2el / max(1, tokens - 1),) * (tokens - 1),
            prompt_tokens=100,
            completion_tokens=0 if self.error else tokens,
            ok=self.error is None,
            error=self.error,
        )

    async def aclose(self) -> None:
        return None


def targets(*agents: str) -> dict[str, Target]:
    return {
        a: Target(agent=a, base_url="http://bench.invalid/v1", model=f"{a}-model") for a in agents
    }
