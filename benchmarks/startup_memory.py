"""Start to ready, and idle memory, of `appliance serve` on the simulator profile.

Runs the shipped configuration (three simulated engines) on free ports a few times and prints: the
time from launching the process until `/health` answers 200 (every engine healthy), and the
resident memory of the appliance process and of each engine once idle, and the appliance's
memory after one conversation turn has run the crisis classifier: resident, and of that the
anonymous part (its own) and the file-backed part (the encoder's weights, mapped from the
installed package: page cache, shared and reclaimable). Usage:

    python benchmarks/startup_memory.py [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import healthy, shipped_config

ROOT = Path(__file__).resolve().parents[1]


def config_with_free_ports(directory: Path) -> tuple[Path, int]:
    text, port = shipped_config(directory)
    path = directory / "models.toml"
    path.write_text(text)
    return path, port


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _one_turn(port: int) -> None:
    body = json.dumps({"message": "I had a rough day at work."}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/converse",
        data=body,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310 (loopback http)
        answer.read()


def one_run() -> tuple[float, float, list[float], tuple[float, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        config, port = config_with_free_ports(Path(tmp))
        started = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "serve",
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            while not healthy(f"http://127.0.0.1:{port}/health"):
                if proc.poll() is not None or time.perf_counter() - started > 60:
                    raise RuntimeError("the appliance did not become ready")
                time.sleep(0.01)
            ready = time.perf_counter() - started
            time.sleep(3)  # idle: background probes have run at least once
            me = psutil.Process(proc.pid)
            rss = me.memory_info().rss / 2**20
            engines = [child.memory_info().rss / 2**20 for child in me.children(recursive=True)]
            _one_turn(port)
            used = (
                me.memory_info().rss / 2**20,
                _status_mb(proc.pid, "RssAnon"),
                _status_mb(proc.pid, "RssFile"),
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return ready, rss, engines, used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    ready = [r[0] for r in runs]
    rss = [r[1] for r in runs]
    engines = runs[-1][2]
    used = runs[-1][3]
    print(f"appliance serve, sim profile ({len(engines)} engines), {args.runs} runs")
    print()
    print("| measure | median | min | max |")
    print("| --- | ---: | ---: | ---: |")
    print(
        f"| start to ready (s) | {statistics.median(ready):.2f} | {min(ready):.2f} | {max(ready):.2f} |"
    )
    print(
        f"| appliance RSS idle (MB) | {statistics.median(rss):.1f} | {min(rss):.1f} | {max(rss):.1f} |"
    )
    print(
        f"| each engine RSS idle (MB) | {statistics.median(engines):.1f} | {min(engines):.1f} | "
        f"{max(engines):.1f} |"
    )
    print()
    print(
        f"after one conversation turn (last run): appliance RSS {used[0]:.1f} MB, of which "
        f"anonymous {used[1]:.1f} MB and file-backed {used[2]:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
