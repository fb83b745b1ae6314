"""Run the real appliance (`appliance serve`) on the simulator profile, on free loopback ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2

from benchmarks.cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models.toml"


def sim_config(
    directory: Path,
    *,
    time_scale: float = 0.01,
    engine_settings: dict[str, str] | None = None,
    extra: str = "",
    replace: dict[str, str] | None = None,
    benchmarks: bool = False,
) -> tuple[Path, int]:
    """A copy of the shipped models.toml with free ports and a fast simulator.

    `engine_settings` maps an engine id to extra TOML lines for that engine (e.g.
    `'startup_timeout_s = 2'`); `replace` applies literal text replacements first.
    Scheduled benchmarks are off unless `benchmarks` is set, so no probe runs inside a test.
    Returns the file and the appliance's port.
    """
    text = SHIPPED.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    if not benchmarks:
        text, found = re.subn(
            r"^(\[bench\]\n(?:[^\[\n].*\n|\n)*?)enabled = true$",
            r"\1enabled = false",
            text,
            count=1,
            flags=re.M,
        )
        assert found == 1
    app_port = free_port()
    text = text.replace("port = 8000", f"port = {app_port}", 1)
    text = text.replace('data_dir = "var"', f'data_dir = "{directory / "var"}"', 1)
    for port in ("8101", "8102", "8103"):
        text = re.sub(rf"^port = {port}$", f"port = {free_port()}", text, count=1, flags=re.M)
    text = text.replace('kind = "sim"', f'kind = "sim"\nsim.time_scale = {time_scale}')
    for engine_id, lines in (engine_settings or {}).items():
        marker = f'id = "{engine_id}"\nkind = "sim"'
        assert marker in text, engine_id
        text = text.replace(marker, f"{marker}\n{lines}", 1)
    path = directory / "models.toml"
    path.write_text(text + "\n" + extra)
    return path, app_port


class Appliance:
    """`appliance serve` as a child process; its stderr goes to a file the tests can read."""

    def __init__(
        self,
        config: Path,
        port: int,
        *,
        env: dict[str, str] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.config = config
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.log_path = config.parent / "appliance.log"
        self._env = {**os.environ, **(env or {})}
        keys = [k for k in self._env.get("APPLIANCE_API_KEYS", "").split(",") if k.strip()]
        key = api_key or (keys[0].strip() if keys else None)
        # Sent unless a call passes its own headers (auth tests pass none on purpose).
        self.headers = {"authorization": f"Bearer {key}"} if key else {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> Appliance:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "serve",
                "--config",
                str(self.config),
                "--log-level",
                "debug",
            ],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait until engines have started (healthy, degraded or unhealthy: no longer starting)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"appliance exited with {self.proc.returncode}:\n{self.log()}")
            try:
                body = self.get("/health/detailed").json()
                if body.get("ready"):
                    return body
            except httpx2.TransportError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"appliance not ready after {timeout} s:\n{self.log()}")

    def get(self, path: str, **kwargs: Any) -> httpx2.Response:
        kwargs.setdefault("headers", self.headers)
        return httpx2.get(self.base_url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx2.Response:
        kwargs.setdefault("headers", self.headers)
        return httpx2.post(self.base_url + path, timeout=30, **kwargs)

    def engines(self) -> dict[str, dict[str, Any]]:
        return self.get("/health/detailed").json()["engines"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def __enter__(self) -> Appliance:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll `predicate` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last value: {value!r})")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
