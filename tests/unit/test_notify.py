"""The sd_notify protocol against a real datagram socket that the test owns."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.notify import Notifier, socket_address, watchdog_interval


class Receiver:
    """What systemd would be: a bound AF_UNIX datagram socket."""

    def __init__(self, sock: socket.socket, env_value: str) -> None:
        self.sock = sock
        self.env_value = env_value

    def messages(self, timeout: float = 5.0) -> list[str]:
        """Every datagram that arrives within `timeout` of the first (at least one)."""
        self.sock.settimeout(timeout)
        got = [self.sock.recv(4096).decode()]
        self.sock.setblocking(False)
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got

    def pending(self) -> list[str]:
        self.sock.setblocking(False)
        got: list[str] = []
        try:
            while True:
                got.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            return got


@pytest.fixture
def path_receiver() -> Iterator[Receiver]:
    # A short directory: AF_UNIX paths are limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn-") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        try:
            yield Receiver(sock, path)
        finally:
            sock.close()


@pytest.fixture
def abstract_receiver() -> Iterator[Receiver]:
    name = f"kai-notify-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        yield Receiver(sock, "@" + name)
    finally:
        sock.close()


def test_address_forms() -> None:
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@name") == "\0name"
    assert socket_address("@") is None
    assert socket_address("relative/path") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval_is_half_the_period_and_only_for_our_pid() -> None:
    pid = os.getpid()
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "x"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, pid) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, pid) is None
    assert watchdog_interval({}, pid) is None


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.ready() is False
    assert notifier.status("loading") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.extend_timeout(1_000_000) is False
    notifier.close()


async def test_watchdog_loop_returns_at_once_without_a_watchdog(path_receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_receiver.env_value})
    await asyncio.wait_for(notifier.watchdog_loop(), timeout=5)
    assert notifier.watchdog() is False
    assert path_receiver.pending() == []


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_messages_reach_the_socket(
    kind: str, path_receiver: Receiver, abstract_receiver: Receiver
) -> None:
    receiver = path_receiver if kind == "path" else abstract_receiver
    notifier = Notifier({"NOTIFY_SOCKET": receiver.env_value})
    assert notifier.enabled
    assert notifier.status("starting engine llama-70b (1/3)")
    assert receiver.messages() == ["STATUS=starting engine llama-70b (1/3)"]
    assert notifier.ready("serving 3 engines")
    assert receiver.messages() == ["READY=1\nSTATUS=serving 3 engines"]
    assert notifier.extend_timeout(90_000_000)
    assert receiver.messages() == ["EXTEND_TIMEOUT_USEC=90000000"]
    assert notifier.stopping()
    assert receiver.messages() == ["STOPPING=1"]
    notifier.close()


def test_status_text_stays_on_one_line(path_receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_receiver.env_value})
    notifier.status("engine failed:\nREADY=1 spoofed")
    assert path_receiver.messages() == ["STATUS=engine failed: READY=1 spoofed"]


def test_extend_timeout_refuses_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        Notifier({}).extend_timeout(0)


def test_unset_environment_keeps_children_from_inheriting(path_receiver: Receiver) -> None:
    env = {
        "NOTIFY_SOCKET": path_receiver.env_value,
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/usr/bin",
    }
    notifier = Notifier(env, unset_environment=True)
    assert env == {"PATH": "/usr/bin"}
    assert notifier.watchdog_interval == 1.0
    assert notifier.watchdog()
    assert path_receiver.messages() == ["WATCHDOG=1"]


def test_a_vanished_socket_is_reported_not_raised(path_receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_receiver.env_value})
    path_receiver.sock.close()
    os.unlink(path_receiver.env_value)
    assert notifier.ready() is False
    assert notifier.status("still running") is False


def test_unusable_socket_value_disables_notification(caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "not-a-path", "WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert "not a socket path" in caplog.text


async def test_watchdog_loop_pings_from_the_event_loop(path_receiver: Receiver) -> None:
    # 0.2 s period: a ping every 0.1 s while the loop runs.
    env = {"NOTIFY_SOCKET": path_receiver.env_value, "WATCHDOG_USEC": "200000"}
    notifier = Notifier(env)
    task = asyncio.create_task(notifier.watchdog_loop())
    pings = 0
    deadline = time.monotonic() + 30
    while pings < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        pings += path_receiver.pending().count("WATCHDOG=1")
    assert pings >= 3

    # A blocked loop sends nothing: this is what lets systemd notice and restart us.
    path_receiver.pending()
    time.sleep(0.5)  # blocks the event loop on purpose
    assert path_receiver.pending() == []
    await asyncio.sleep(0)  # the loop runs again: the ping task catches up with one ping
    await asyncio.sleep(0.01)
    assert "WATCHDOG=1" in path_receiver.pending()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    path_receiver.pending()
    await asyncio.sleep(0.3)
    assert path_receiver.pending() == []


def test_a_manager_that_stops_reading_never_blocks_the_caller(path_receiver: Receiver) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": path_receiver.env_value})
    # Fill the receiver's queue: nobody reads it, as with a stuck service manager.
    sent = 0
    while notifier.status(f"filling {sent}"):
        sent += 1
        assert sent < 100_000
    started = time.monotonic()
    results = [notifier.watchdog() for _ in range(5)]
    elapsed = time.monotonic() - started
    assert results == [False] * 5
    # A blocking send would wait for its timeout on each call; a non-blocking one returns at once.
    assert elapsed < 1.0
    notifier.close()
