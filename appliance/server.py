"""Run the app under uvicorn: loopback unless API keys exist, STOPPING as soon as SIGTERM lands.

With `[server] drain_s`, the first SIGTERM (or SIGINT) only turns the appliance not-ready: a load
balancer's health check and agent-check see it and move traffic away, while in-flight and newly
arriving requests are still served. After `drain_s` seconds it stops as without draining; a second
signal stops it at once.
"""

from __future__ import annotations

import gc
import logging
import socket
import time
from types import FrameType

import msgspec
import uvicorn

from appliance.api.app import create_app
from appliance.api.auth import api_keys
from appliance.config.schema import Config
from appliance.core import Appliance
from appliance.errors import ConfigError
from appliance.notify import Notifier
from appliance.root import Lifecycle, build

log = logging.getLogger("appliance.server")
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# A request's objects are freed by reference counting as it ends, so the cycle collector has
# little to find on the hot path; at Python's default (a young collection every 700 net
# allocations) it still ran about 20 times a second under load and cost ~7 µs a request. With
# this threshold it runs only when cycles really pile up.
GC_THRESHOLD = (10_000, 10, 10)


def check_exposure(config: Config, host: str) -> None:
    """No key, no network: refuse to listen beyond loopback without API keys (says nothing else:
    `config validate` runs it too)."""
    if not api_keys(config) and host not in LOOPBACK:
        raise ConfigError(
            config.source,
            "server.host",
            f"a loopback address (127.0.0.1) when no API key is configured; set "
            f"{config.security.api_keys_env} (or [security].api_keys) to listen on {host}",
            got=host,
        )


def _warn_if_open(config: Config, host: str) -> None:
    if api_keys(config):
        return
    log.warning(
        "no API key configured: serving on loopback only (%s); set %s to require keys",
        host,
        config.security.api_keys_env,
    )


class _Server(uvicorn.Server):
    """uvicorn, with the shutdown order the appliance needs: a drain first when configured (not
    ready, still serving), then background services (benchmarks) stop, then the listener closes and
    requests drain, then the lifespan stops engines."""

    def __init__(
        self,
        config: uvicorn.Config,
        appliance: Appliance,
        lifecycle: Lifecycle,
        drain_s: float,
    ) -> None:
        super().__init__(config)
        self._appliance = appliance
        self._lifecycle = lifecycle
        self._drain_s = drain_s
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._appliance.notifier.stopping("draining requests")
        if self._drain_s > 0 and self._drain_until is None and self.started:
            # Runs in the signal handler: set flags only; `on_tick` ends the drain.
            self._appliance.draining = True
            self._drain_until = time.monotonic() + self._drain_s
            self._captured_signals.append(sig)  # re-raised after the stop, as uvicorn does
            return
        super().handle_exit(sig, frame)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        settle_heap()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self._lifecycle.stop_background()
        await super().shutdown(sockets)

    async def on_tick(self, counter: int) -> bool:
        drained = self._drain_until is not None and time.monotonic() >= self._drain_until
        if drained and not self.should_exit:
            log.info("drained for %.0f s: stopping", self._drain_s)
            self.should_exit = True
        return await super().on_tick(counter)


def settle_heap() -> None:
    """Once the app is built: what exists now (the app, the encoder, the configuration) lives as
    long as the process, so it is frozen out of the collector's walks, and the collector is told
    to run rarely (`GC_THRESHOLD`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def serve(config: Config, *, host: str, port: int) -> int:
    check_exposure(config, host)
    _warn_if_open(config, host)
    # Command-line host and port win; everything that needs the address reads it from config.
    config = msgspec.structs.replace(
        config, server=msgspec.structs.replace(config.server, host=host, port=port)
    )
    wiring = build(config, notifier=Notifier(unset_environment=True))
    lifecycle = Lifecycle(wiring.appliance, wiring.background)
    app = create_app(wiring, lifecycle=lifecycle)
    server = _Server(
        uvicorn.Config(
            app,
            host=host,
            port=port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=int(config.server.shutdown_grace_s),
            server_header=False,
            # Client addresses are not used (no access log; limits are per key), so uvicorn need
            # not rewrite them from proxy headers: one layer less on every request.
            proxy_headers=False,
        ),
        wiring.appliance,
        lifecycle,
        config.server.drain_s,
    )
    log.info(
        "appliance %s listening on http://%s:%d (profile %s)",
        _version(),
        host,
        port,
        config.profile,
    )
    server.run()
    return 0 if server.started else 1


def _version() -> str:
    from appliance import __version__

    return __version__
