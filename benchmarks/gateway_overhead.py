"""What the appliance adds over calling a simulator engine directly (zero-latency setting).

Starts one simulator engine at time scale 0 and the appliance in front of it (as an `external`
engine, so both can be called with the same key), then measures, side by side in one run:

- latency at concurrency 1 (P50 and P99; the difference is the gateway's added latency),
- throughput at concurrency 64 (requests/s, and the gateway's fraction of the direct figure),
- the appliance process's CPU time per request during the throughput run,

for non-streaming and streaming requests. Usage:

    python benchmarks/gateway_overhead.py [--requests 4000] [--samples 600] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import build_request, percentile, run_load
from loopback import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
MODEL = "bench-model"


@contextmanager
def process(argv: list[str], env: dict[str, str] | None = None):
    proc = subprocess.Popen(
        argv, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def body(stream: bool) -> bytes:
    payload = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_tokens": 16,
        "stream": stream,
    }
    return json.dumps(payload).encode()


async def measure(
    port: int, stream: bool, samples: int, requests: int, concurrency: int, cpu_pid: int | None
) -> dict[str, float]:
    request = build_request("127.0.0.1", port, "/v1/chat/completions", body(stream), KEY)
    await run_load("127.0.0.1", port, request, concurrency=8, total=200)  # warm-up
    single = await run_load("127.0.0.1", port, request, concurrency=1, total=samples)
    proc = psutil.Process(cpu_pid) if cpu_pid else None
    before = proc.cpu_times() if proc else None
    loaded = await run_load("127.0.0.1", port, request, concurrency=concurrency, total=requests)
    cpu_us = float("nan")
    if proc and before:
        after = proc.cpu_times()
        spent = (after.user - before.user) + (after.system - before.system)
        cpu_us = spent / max(len(loaded.latencies), 1) * 1e6
    return {
        "p50_ms": percentile(single.latencies, 50) * 1000,
        "p99_ms": percentile(single.latencies, 99) * 1000,
        "rps": loaded.rps,
        "loaded_p50_ms": percentile(loaded.latencies, 50) * 1000,
        "errors": single.errors + loaded.errors,
        "cpu_us": cpu_us,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--samples", type=int, default=600)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--time-scale",
        default="0",
        help="simulator time scale: 0 = zero latency (CPU-bound on small machines); "
        "e.g. 0.05 = ~20 ms per request, where the engine is the bottleneck as on a GPU host",
    )
    args = parser.parse_args()

    sim_port, app_port = free_port(), free_port()
    # The simulator takes 4096 sequences at once; tell admission so, as an operator would set a
    # real engine's capacity (an external engine otherwise counts as 64, a quarter of them kept
    # for the guardrail, and 64 clients would queue behind 48 slots).
    config_dir = tempfile.mkdtemp(prefix="overhead-")
    config = Path(config_dir) / "models.toml"
    text = (ROOT / "models.toml").read_text()
    config.write_text(text.replace("[admission]\n", "[admission]\nmax_concurrency = 4096\n", 1))
    sim = [
        sys.executable,
        "-m",
        "appliance.simulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(sim_port),
        "--served-model-name",
        MODEL,
        "--api-key",
        KEY,
        "--time-scale",
        args.time_scale,
        "--max-num-seqs",
        "4096",
        MODEL,
    ]
    app = [
        sys.executable,
        "-m",
        "appliance.cli",
        "serve",
        "--config",
        str(config),
        "--port",
        str(app_port),
        "--log-level",
        "warning",
    ]
    app_env = {
        "LLM_BASE_URL": f"http://127.0.0.1:{sim_port}/v1",
        "LLM_API_KEY": KEY,
        "LLM_MODEL": MODEL,
        "LLM_MAX_RETRIES": "0",
    }
    with process(sim) as sim_proc, process(app, app_env) as app_proc:
        wait_healthy(f"http://127.0.0.1:{sim_port}/health")
        wait_healthy(f"http://127.0.0.1:{app_port}/health")
        rows = []
        for stream in (False, True):
            direct = asyncio.run(
                measure(sim_port, stream, args.samples, args.requests, args.concurrency, None)
            )
            gateway = asyncio.run(
                measure(
                    app_port, stream, args.samples, args.requests, args.concurrency, app_proc.pid
                )
            )
            rows.append((stream, direct, gateway))
        del sim_proc
    print(
        f"Gateway overhead vs. direct simulator (time scale {args.time_scale}), "
        f"{os.cpu_count()} cores; "
        f"latency: {args.samples} requests at concurrency 1; throughput: {args.requests} "
        f"requests at concurrency {args.concurrency}"
    )
    print()
    print(
        "| mode | path | P50 ms | P99 ms | req/s @64 | ratio | added P50 ms | CPU µs/req | errors |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for stream, direct, gateway in rows:
        mode = "stream" if stream else "plain"
        print(
            f"| {mode} | direct | {direct['p50_ms']:.3f} | {direct['p99_ms']:.3f} | "
            f"{direct['rps']:.0f} | 1.00 | - | - | {direct['errors']:.0f} |"
        )
        ratio = gateway["rps"] / direct["rps"] if direct["rps"] else float("nan")
        added = gateway["p50_ms"] - direct["p50_ms"]
        print(
            f"| {mode} | gateway | {gateway['p50_ms']:.3f} | {gateway['p99_ms']:.3f} | "
            f"{gateway['rps']:.0f} | {ratio:.2f} | {added:.3f} | {gateway['cpu_us']:.0f} | "
            f"{gateway['errors']:.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
