"""HAProxy's agent-check protocol on `[server] lb_agent_port`: one line of load feedback per
connection, then close.

HAProxy connects every `agent-inter`, reads one line and applies its words:

- `up ready 75%`: serving; the percentage scales the server's configured weight, from the
  appliance's saturation (100% idle, down to 1% when full). `up` and `ready` undo an earlier
  `down` or `drain`;
- `drain`: SIGTERM arrived; no new sessions, the ones open finish;
- `down`: not ready (starting, or an agent without any engine up).

The health check on `/health/ready` says the same through HTTP; the agent adds the weight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from appliance.lifecycle import Background
from appliance.loadbalancer.readiness import readiness, saturation

if TYPE_CHECKING:
    from appliance.core import Appliance

log = logging.getLogger("appliance.loadbalancer")
MIN_WEIGHT_PERCENT = 1


def agent_reply(services: Appliance) -> bytes:
    """The line HAProxy reads."""
    if services.draining:
        return b"drain\n"
    if not readiness(services).ready:
        return b"down\n"
    weight = max(MIN_WEIGHT_PERCENT, round(100 * (1.0 - saturation(services))))
    return f"up ready {weight}%\n".encode()


class AgentCheckServer(Background):
    """The TCP listener on `[server] lb_agent_port`, a background part of the appliance."""

    def __init__(self, services: Appliance, host: str, port: int) -> None:
        self.services = services
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._answer, self.host, self.port)
        except OSError as exc:  # the appliance still serves; the balancer keeps static weights
            log.error("cannot answer the agent-check on %s:%d: %s", self.host, self.port, exc)
            return
        log.info("HAProxy agent-check answering on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(agent_reply(self.services))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
