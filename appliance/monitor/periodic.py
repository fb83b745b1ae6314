"""A background task that runs one async function every `interval_s`, and survives its failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from appliance.lifecycle import Background

log = logging.getLogger("appliance.monitor")


class Periodic(Background):
    def __init__(self, name: str, interval_s: float, tick: Callable[[], Awaitable[None]]) -> None:
        self.name = name
        self.interval_s = interval_s
        self._tick = tick
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        if not self.running:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a monitor must not die of one bad reading; say so once
                if not self._failing:
                    log.exception("%s failed; retrying every %g s", self.name, self.interval_s)
                self._failing = True
            else:
                self._failing = False
            await asyncio.sleep(self.interval_s)
