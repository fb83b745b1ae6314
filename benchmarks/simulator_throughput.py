"""How fast the simulator engine answers at time scale 0: the baseline of the gateway benchmark.

Starts `python -m appliance.simulator` on a free loopback port, times how long it takes until
/health answers, then drives N non-streaming and N streaming chat requests at a fixed concurrency
over keep-alive connections (the lean client in `loadgen.py`) and prints requests/s, P50 and P99
latency and the simulator's CPU time per request. Usage:

    python benchmarks/simulator_throughput.py [--requests 5000] [--concurrency 64] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import build_request, percentile, run_load
from loopback import free_port

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
MODEL = "bench-8b"
HOST = "127.0.0.1"


def start_simulator(port: int, time_scale: float) -> tuple[subprocess.Popen[bytes], float]:
    """The simulator process and the seconds from spawn to a 200 from /health."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.simulator", MODEL, "--port", str(port),
         "--api-key", KEY, "--time-scale", str(time_scale), "--max-num-seqs", "1024"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = started + 30
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the simulator exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return process, time.perf_counter() - started
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.01)
    process.kill()
    raise SystemExit("the simulator did not become healthy within 30 s")


def chat_body(stream: bool, max_tokens: int) -> bytes:
    body: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "A short benchmark question."}],
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body).encode()


async def measure(
    port: int, process: psutil.Process, stream: bool, args: argparse.Namespace
) -> dict[str, float]:
    request = build_request(HOST, port, "/v1/chat/completions", chat_body(stream, args.max_tokens),
                            KEY)  # fmt: skip
    await run_load(HOST, port, request, concurrency=args.concurrency, total=args.warmup)
    cpu_before = process.cpu_times()
    result = await run_load(HOST, port, request, concurrency=args.concurrency, total=args.requests)
    cpu_after = process.cpu_times()
    cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
    done = len(result.latencies)
    return {
        "rps": result.rps,
        "p50_ms": percentile(result.latencies, 50) * 1000,
        "p99_ms": percentile(result.latencies, 99) * 1000,
        "ttfb_p50_ms": percentile(result.ttfb, 50) * 1000,
        "errors": float(result.errors),
        "cpu_us_per_request": cpu / done * 1e6 if done else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--time-scale", type=float, default=0.0)
    args = parser.parse_args()

    port = free_port()
    process, startup_s = start_simulator(port, args.time_scale)
    try:
        print(f"simulator: time scale {args.time_scale:g}, {args.requests} requests per mode, "
              f"concurrency {args.concurrency}, max_tokens {args.max_tokens}, "
              f"{psutil.cpu_count()} CPUs shared by client and server")  # fmt: skip
        print(f"start to /health: {startup_s * 1000:.0f} ms")
        print(f"{'mode':<14}{'req/s':>9}{'P50 ms':>9}{'P99 ms':>9}{'TTFB P50':>10}"
              f"{'CPU us/req':>12}{'errors':>8}")  # fmt: skip
        watched = psutil.Process(process.pid)
        for label, stream in (("non-streaming", False), ("streaming", True)):
            figures = asyncio.run(measure(port, watched, stream, args))
            print(f"{label:<14}{figures['rps']:>9.0f}{figures['p50_ms']:>9.2f}"
                  f"{figures['p99_ms']:>9.2f}{figures['ttfb_p50_ms']:>10.2f}"
                  f"{figures['cpu_us_per_request']:>12.0f}{figures['errors']:>8.0f}")  # fmt: skip
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    main()
