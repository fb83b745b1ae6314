"""The systemd notify protocol (sd_notify), spoken directly so no extra dependency is needed.

systemd starts a `Type=notify` service with `NOTIFY_SOCKET` set to a datagram socket and waits
for `READY=1` on it; `STATUS=` lines show in `systemctl status` while models load; with
`WatchdogSec=` it also sets `WATCHDOG_USEC` and restarts the service when `WATCHDOG=1` pings stop.
The pings come from the event loop itself, so a blocked loop stops them and systemd restarts the
appliance.

With `NOTIFY_SOCKET` unset (a terminal, a test, a container) every call is a cheap no-op.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping, MutableMapping

log = logging.getLogger(__name__)

ENV_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def socket_address(value: str) -> str | None:
    """`/run/systemd/notify` or `@abstract-name` as an AF_UNIX address; None if unusable."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings (half of `WATCHDOG_USEC`), or None when the watchdog is not ours."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get("WATCHDOG_PID", "").strip()
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    return usec / 2 / 1_000_000


class Notifier:
    """Sends state changes to the service manager; does nothing outside systemd."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        unset_environment: bool = False,
    ) -> None:
        """Read the protocol's variables from `env` (default: the process environment).

        `unset_environment` removes them afterwards, as sd_notify(3) can, so that engines and other
        child processes do not inherit a socket and a watchdog that belong to the appliance.
        """
        source = os.environ if env is None else env
        raw = source.get("NOTIFY_SOCKET", "")
        self._address = socket_address(raw) if raw else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a socket path or @name; not notifying", raw)
        self._watchdog_interval = watchdog_interval(source, os.getpid()) if self._address else None
        self._socket: socket.socket | None = None
        self._failed = False
        if unset_environment and isinstance(source, MutableMapping):
            for name in ENV_VARS:
                source.pop(name, None)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings, or None when systemd expects none."""
        return self._watchdog_interval

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines as one datagram; True if it was delivered."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode()
        try:
            self._connect().sendto(payload, self._address)
        except BlockingIOError:
            # The manager's queue is full: drop this message rather than hold the event loop.
            if not self._failed:
                log.warning("the service manager is not reading notifications; dropped one")
            self._failed = True
            return False
        except OSError as exc:
            if not self._failed:
                log.warning("cannot notify the service manager: %s", exc)
            self._failed = True
            self.close()
            return False
        self._failed = False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Startup is complete: engines are healthy and the HTTP server listens."""
        lines = ["READY=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.notify(*lines)

    def status(self, text: str) -> bool:
        """A one-line description of what the appliance is doing, for `systemctl status`."""
        return self.notify(_status_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """Shutdown has begun; systemd then waits `TimeoutStopSec` for the process to exit."""
        lines = ["STOPPING=1"]
        if status is not None:
            lines.append(_status_line(status))
        return self.notify(*lines)

    def watchdog(self) -> bool:
        """Tell systemd the appliance is alive; a no-op when no watchdog is set for us."""
        if self._watchdog_interval is None:
            return False
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, usec: int) -> bool:
        """Ask for `usec` more microseconds to start or stop (a large model still loading)."""
        if usec <= 0:
            raise ValueError("extend_timeout needs a positive number of microseconds")
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(usec)}")

    async def watchdog_loop(self) -> None:
        """Ping every half watchdog period from the event loop, until cancelled.

        Returns at once when systemd set no watchdog for this process.
        """
        interval = self._watchdog_interval
        if interval is None:
            return
        while True:
            self.watchdog()
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _connect(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # Never blocking: the sends come from the event loop.
            sock.setblocking(False)
            self._socket = sock
        return self._socket


def _status_line(text: str) -> str:
    """STATUS= is one line: newlines would start new assignments."""
    return "STATUS=" + " ".join(text.split())
