"""Notices a client that goes away while its request waits, and cancels that request, as vLLM
frees the slot of an abandoned request."""

from __future__ import annotations

import asyncio
from typing import Any

from appliance.simulator.http_io import Receive


class Watch:
    """Started by the first wait, so requests that never wait (time scale 0) pay nothing for it."""

    __slots__ = ("done", "fired", "owner", "receive", "task")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.owner: asyncio.Task[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.fired = False
        self.done = False

    def arm(self) -> None:
        if self.task is None:
            self.owner = asyncio.current_task()
            self.task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.done and self.owner is not None:
            self.fired = True
            self.owner.cancel()

    def aborted(self) -> bool:
        """In an `except CancelledError`: True (and the cancel undone) when it was ours."""
        if not self.fired:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def close(self) -> None:
        self.done = True
        if self.task is not None and not self.task.done():
            self.task.cancel()
