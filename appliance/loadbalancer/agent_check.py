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

from appliance.loadbalancer.readiness import readiness, saturation

if TYPE_CHECKING:
    from appliance.services import Services

log = logging.getLogger("appliance.loadbalancer")
MIN_WEIGHT_PERCENT = 1


def agent_reply(services: Services) -> bytes:
    """The line HAProxy reads."""
    if services.draining:
        return b"drain\n"
    if not readiness(services).ready:
        return b"down\n"
    weight = max(MIN_WEIGHT_PERCENT, round(100 * (1.0 - saturation(services))))
    return f"up ready {weight}%\n".encode()


class AgentCheckServer:
    """The TCP listener, started and stopped with the services."""

    def __init__(self, services: Services, host: str, port: int) -> None:
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


def install(services: Services) -> None:
    """Answer the agent-check when `[server] lb_agent_port` is set."""
    port = services.config.server.lb_agent_port
    if not port:
        return
    server = AgentCheckServer(services, services.config.server.host, port)
    services.on_start.append(server.start)
    services.on_stop.append(server.stop)
