"""What the operations page costs the appliance: the time to answer `/admin/overview`,
`/admin/history` (a full hour of samples) and `/metrics`, and the size of each answer.

Starts `appliance serve` on the shipped simulator profile with a history sample every 0.1 s, so
that within 13 s the history holds as many points as an hour at the default 30 s (120); puts a
little traffic through every agent, then times each route from one client, one request at a time.
Usage:

    python benchmarks/ops_page.py [--calls 200]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import shipped_config, wait_healthy

KEY = "ops-page-benchmark-key"
AGENTS = ("kai", "guardrail", "genetic", "wellness")


def call(url: str, body: bytes | None = None) -> bytes:
    request = urllib.request.Request(  # noqa: S310 (loopback http)
        url,
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        return bytes(response.read())


def timed(url: str, calls: int) -> tuple[list[float], int]:
    times, size = [], 0
    for _ in range(calls):
        started = time.perf_counter()
        size = len(call(url))
        times.append((time.perf_counter() - started) * 1000)
    return times, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text, port = shipped_config(Path(tmp))
        text = text.replace(
            "shutdown_grace_s = 10.0", "shutdown_grace_s = 10.0\nhistory_interval_s = 0.1", 1
        )
        config = Path(tmp) / "models.toml"
        config.write_text(text.replace('kind = "sim"', 'kind = "sim"\nsim.time_scale = 0.01'))
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config),
             "--log-level", "warning"],
            env={**os.environ, "APPLIANCE_API_KEYS": KEY},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base + "/health", timeout=60)
            for agent in AGENTS:
                for _ in range(10):
                    payload = {"model": agent, "messages": [{"role": "user", "content": "Hi"}]}
                    call(base + "/v1/chat/completions", json.dumps(payload).encode())
            time.sleep(13)  # the history fills: about 130 samples at 0.1 s
            points = len(json.loads(call(base + "/admin/history"))["agents"]["kai"]["points"])
            print(f"history points per agent: {points}")
            print(f"{'route':<18} {'P50 ms':>8} {'P95 ms':>8} {'bytes':>8}  ({args.calls} calls)")
            for route in ("/admin/overview", "/admin/history", "/metrics"):
                times, size = timed(base + route, args.calls)
                p95 = statistics.quantiles(times, n=20)[18]
                print(f"{route:<18} {statistics.median(times):8.2f} {p95:8.2f} {size:8d}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
