"""Engine process states, named like Supervisor's, and the status record the API reports."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EngineState(StrEnum):
    """Where a launched engine is in its life.

    STOPPED → STARTING → RUNNING; a process that ends unasked goes EXITED → BACKOFF → STARTING;
    one that keeps failing fast ends FATAL and stays there until restarted by hand.
    """

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    STOPPING = "STOPPING"
    EXITED = "EXITED"
    FATAL = "FATAL"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """A snapshot of one engine, handed to `on_change` callbacks and the health route."""

    engine_id: str
    state: EngineState
    pid: int | None
    # Processes started after the first one.
    restarts: int
    # Wall-clock time (`time.time()`) of the last state change.
    since: float
    last_exit_code: int | None
    last_error: str | None
    # The engine's last output line while STARTING (vLLM's loading messages); kept after a failed
    # start because it usually says why.
    progress: str | None
    healthy: bool
