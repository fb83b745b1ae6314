"""One request's time on the simulated engine: queue, prefill, decode steps, release, metrics."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from appliance.simulator import latency
from appliance.simulator.plan import Plan
from appliance.simulator.watch import Watch

if TYPE_CHECKING:
    from appliance.simulator.server import Simulator


class Run:
    """Sleeps as the latency model says; the watch ends them early when the client goes."""

    __slots__ = ("admitted", "arrival", "due", "generated", "plan", "sim", "ttft", "watch")

    def __init__(self, sim: Simulator, watch: Watch, plan: Plan) -> None:
        self.sim = sim
        self.watch = watch
        self.plan = plan
        self.arrival = time.monotonic()
        self.admitted: float | None = None
        self.ttft = 0.0
        self.due = 0.0
        self.generated = 0

    async def start(self) -> None:
        """Wait for a slot, then prefill; the first token is ready when this returns."""
        scheduler = self.sim.scheduler
        if not scheduler.try_admit(self.plan.reservation):
            self.watch.arm()
            await scheduler.admit(self.plan.reservation)
        self.admitted = time.monotonic()
        await self._sleep(latency.prefill_s(self.sim.profile, self.plan.prompt))
        self.due = time.monotonic()
        self.ttft = self.due - self.arrival
        self.generated = 1

    async def tick(self, remaining: int, tick_s: float, cap: int) -> int:
        """Decode the next group of tokens (at most `remaining`); returns how many.

        Sleeps run to a schedule rather than back to back, so timer overshoot does not pile up.
        """
        step = latency.decode_step_s(self.sim.profile, self.sim.scheduler.running)
        group = min(remaining, latency.tokens_per_tick(step, tick_s, cap))
        if step > 0:
            self.due += group * step
            await self._sleep(self.due - time.monotonic())
        self.generated += group
        return group

    async def stall(self, seconds: float) -> None:
        """A hang: not time-scaled, ended early only by the client going away."""
        await self._sleep(seconds)
        self.due = time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.watch.arm()
            await asyncio.sleep(seconds)

    def finish(self) -> None:
        if self.admitted is None:
            return
        sim = self.sim
        sim.scheduler.release(self.plan.reservation)
        complete = self.generated >= len(self.plan.tokens) and not self.watch.fired
        sim.metrics.finished(
            reason=self.plan.finish_reason if complete else "abort",
            prompt=self.plan.prompt,
            generated=self.generated,
            queue_s=self.admitted - self.arrival,
            ttft_s=self.ttft,
            e2e_s=time.monotonic() - self.arrival,
        )
