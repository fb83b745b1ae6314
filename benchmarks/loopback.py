"""What the benchmarks share to run the appliance and its engines on loopback."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from cluster import free_port  # beside this module: the scripts run with this folder on sys.path

ROOT = Path(__file__).resolve().parents[1]


def healthy(url: str) -> bool:
    """One GET; True on a 200."""
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 (loopback http)
            return response.status == 200
    except OSError:
        return False


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not healthy after {timeout} s")
        time.sleep(0.05)


def shipped_config(directory: Path) -> tuple[str, int]:
    """The shipped models.toml with free ports (the appliance and the `sim` profile's engines) and
    its data directory under `directory`; returns the text and the appliance's port."""
    text = (ROOT / "models.toml").read_text()
    port = free_port()
    text = re.sub(r"^port = 8000$", f"port = {port}", text, count=1, flags=re.M)
    text = text.replace('data_dir = "var"', f'data_dir = "{directory / "var"}"', 1)
    for engine_port in ("8101", "8102", "8103"):
        text = re.sub(
            rf"^port = {engine_port}$", f"port = {free_port()}", text, count=1, flags=re.M
        )
    return text, port
