"""What a benchmark measures and keeps: samples, phases and their results.

Nothing here holds prompt or answer text: a sample is timings, token counts and an error class.
Times are seconds; under a simulator's time scale they are already divided by the scale, so a run
at time scale 0.1 reads like the real hardware it stands for.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Mode = Literal["concurrency", "rate"]
Kind = Literal["run", "sweep", "probe"]
Trigger = Literal["manual", "api", "schedule"]
Status = Literal["running", "completed", "interrupted", "failed", "skipped"]
MIX = "mix"


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """One request as the client saw it."""

    phase: int
    seq: int
    agent: str
    model: str
    start_s: float  # since the run started
    ttft_s: float = 0.0
    e2el_s: float = 0.0
    itl_s: tuple[float, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ok: bool = True
    # The appliance answered from a fallback model (`model` is then the one that answered).
    fallback: bool = False
    # Status and error type only ("http_503 overloaded_error", "timeout"); never message text.
    error: str | None = None


class Phase(msgspec.Struct, frozen=True, kw_only=True):
    """One load level for one scope: an agent alone, or the realistic mix."""

    index: int
    scope: str  # an agent name or "mix"
    mode: Mode
    concurrency: int | None = None  # closed loop: requests kept in flight
    rate: float | None = None  # Poisson: requests per second
    num_requests: int

    @property
    def level(self) -> float:
        if self.mode == "concurrency":
            return float(self.concurrency or 1)
        return float(self.rate or 0.0)

    @property
    def label(self) -> str:
        load = f"c={self.concurrency}" if self.mode == "concurrency" else f"{self.rate:g} req/s"
        return f"{self.scope} {load}"


class PhaseResult(msgspec.Struct, frozen=True, kw_only=True):
    """A phase's statistics per scope: the mix gives one for itself and one per agent in it."""

    phase: int
    scope: str
    agent: str | None  # the agent these figures are for; None for the whole mix
    model: str
    mode: Mode
    concurrency: int | None
    rate: float | None
    metrics: dict[str, Any]  # vLLM's result keys plus `error_rate` and `tokens_per_s`
