"""Simulator engines as real processes for the benchmark tests, on free loopback ports."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2

from tests.support.running import free_port

KEY = "bench-sim-key"


@dataclass
class SimEngine:
    model: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def start_sim(model: str, log_dir: Path, *args: str) -> SimEngine:
    port = free_port()
    log = log_dir / f"sim-{model}-{port}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "appliance.simulator",
            "--model",
            model,
            "--port",
            str(port),
            "--api-key",
            KEY,
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    engine = SimEngine(model, port, process, log)
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"simulator exited: {log.read_text(errors='replace')}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return engine
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    stop_sim(engine)
    raise TimeoutError(f"simulator on port {port} not healthy after 30 s")


def stop_sim(engine: SimEngine) -> None:
    if engine.process.poll() is None:
        engine.process.terminate()
        try:
            engine.process.wait(10)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()


@contextmanager
def running_sim(model: str, log_dir: Path, *args: str) -> Iterator[SimEngine]:
    engine = start_sim(model, log_dir, *args)
    try:
        yield engine
    finally:
        stop_sim(engine)
