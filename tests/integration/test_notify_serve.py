"""`appliance serve` under a stand-in for systemd: a notify socket that the test owns.

What systemd relies on, seen from its side of the socket: STATUS lines while engines start,
READY=1 only once every engine is healthy, WATCHDOG=1 pings for as long as the event loop runs,
and STOPPING=1 when SIGTERM lands. Engines do not inherit the socket.
"""

from __future__ import annotations

import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.running import Appliance, pid_alive, sim_config, wait_for

ENGINES = ("llama-70b", "llama-8b", "qwen-32b")
WATCHDOG_USEC = 600_000  # pings every 0.3 s


class NotifySocket:
    """The service manager's end: records every datagram in arrival order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def lines(self) -> list[str]:
        """Every assignment received, one per line, in order."""
        with self._lock:
            return [line for _, message in self.messages for line in message.split("\n")]

    def has(self, line: str) -> bool:
        return line in self.lines()

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # A short directory: AF_UNIX paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as tmp:
        receiver = NotifySocket(str(Path(tmp) / "notify"))
        try:
            yield receiver
        finally:
            receiver.close()


def status_of(appliance: Appliance) -> dict[str, Any] | None:
    try:
        return dict(appliance.get("/health/detailed").json())
    except (httpx2.TransportError, ValueError):
        return None


def test_serve_speaks_the_notify_protocol(tmp_path: Path, notify_socket: NotifySocket) -> None:
    # The last engine loads slowly, so the HTTP server answers while engines are still starting.
    config, port = sim_config(tmp_path, engine_settings={"qwen-32b": "sim.slow_start_s = 1.5"})
    appliance = Appliance(
        config,
        port,
        env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)},
    )
    appliance.start(wait=False)
    try:
        # Until READY, look at the appliance from outside: it must say it is still starting.
        starting_seen_before_ready = False
        deadline = time.monotonic() + 90
        while not notify_socket.has("READY=1"):
            assert time.monotonic() < deadline, f"no READY=1:\n{appliance.log()[-3000:]}"
            assert appliance.proc is not None and appliance.proc.poll() is None, appliance.log()
            body = status_of(appliance)
            if (
                body is not None
                and body["status"] == "starting"
                and not notify_socket.has("READY=1")
            ):
                starting_seen_before_ready = True
            time.sleep(0.05)
        assert starting_seen_before_ready, "never saw the appliance answer while engines started"

        lines = notify_socket.lines()
        ready_at = lines.index("READY=1")
        assert lines.count("READY=1") == 1
        before_ready = [line for line in lines[:ready_at] if line.startswith("STATUS=")]
        for engine in ENGINES:
            # Each engine's turn to RUNNING (healthy) was announced before READY.
            assert any(engine in line and "RUNNING" in line for line in before_ready), (
                engine,
                before_ready,
            )

        body = appliance.get("/health/detailed").json()
        assert body["status"] == "healthy"
        assert body["ready"] is True
        engines = body["engines"]
        assert sorted(engines) == sorted(ENGINES)
        assert all(view["up"] for view in engines.values())

        # Engines are children of the appliance; the socket and the watchdog are not theirs.
        for view in engines.values():
            environ = Path(f"/proc/{view['pid']}/environ").read_bytes().split(b"\0")
            assert not any(item.startswith((b"NOTIFY_SOCKET=", b"WATCHDOG_")) for item in environ)

        # The watchdog keeps pinging from the event loop after READY.
        pings_at_ready = notify_socket.lines().count("WATCHDOG=1")
        assert pings_at_ready >= 1
        wait_for(lambda: notify_socket.lines().count("WATCHDOG=1") >= pings_at_ready + 3, 30)
    finally:
        code = appliance.stop(signal.SIGTERM, timeout=60)

    # Exiting by the SIGTERM itself (uvicorn re-raises it once drained) is a clean stop to systemd.
    assert code in (0, -signal.SIGTERM), appliance.log()[-3000:]
    lines = notify_socket.lines()
    assert "STOPPING=1" in lines
    stopping_at = lines.index("STOPPING=1")
    assert stopping_at > lines.index("READY=1")
    assert "READY=1" not in lines[stopping_at:]
    for view in engines.values():
        assert not pid_alive(int(view["pid"]))
