"""Background parts as async context managers: entered in order, exited in reverse.

The composition root enters every part that runs in the background (the supervisor, the prober,
the monitors, the benchmarks, the watchdog) through an `AsyncExitStack`, so the stop order is the
start order reversed and a part that failed to start stops nothing it never started.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self


class Background:
    """A part with `start()` and `stop()`; `async with part:` runs it."""

    async def start(self) -> None:
        """Begin running; return once started (long work goes to tasks)."""

    async def stop(self) -> None:
        """Stop and release everything `start` took; safe to call when not started."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
