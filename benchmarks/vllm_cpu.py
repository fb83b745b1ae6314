"""Real vLLM (CPU build) under the appliance: cold start, and tokens/s through it and direct.

    .venv-vllm/bin/python benchmarks/vllm_cpu.py [--requests 8] [--max-tokens 64]

Builds the tiny test model, starts `appliance serve --profile cpu` on free ports, and prints the
engine's cold start (process start to the appliance ready), then output tokens per second at
concurrency 1 and 4, through the appliance's /v1/chat/completions and straight to the engine.
The direct calls use the engine's internal key, read from its environment (same user only).
The model's weights are random: the figures measure the serving path, not a useful model.
"""

from __future__ import annotations

import argparse
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import openai
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import ROOT, free_port

MODEL = "tiny-llama"


def config(directory: Path, model: Path) -> tuple[Path, int, int]:
    text = (ROOT / "models.toml").read_text()
    app, engine = free_port(), free_port()
    text = re.sub(r"^port = 8000$", f"port = {app}", text, count=1, flags=re.M)
    text = re.sub(r"^port = 8111$", f"port = {engine}", text, count=1, flags=re.M)
    text = text.replace('data_dir = "var"', f'data_dir = "{directory / "var"}"', 1)
    text = text.replace('model = "./var/models/tiny-llama"', f'model = "{model}"', 1)
    text = re.sub(r"(?m)^enabled = true$", "enabled = false", text)  # no scheduled benchmarks
    path = directory / "models.toml"
    path.write_text(text)
    return path, app, engine


def wait_ready(url: str, appliance: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the appliance says it is ready (its engines RUNNING); fails if it exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if appliance.poll() is not None:
            raise RuntimeError(f"the appliance exited with {appliance.returncode}")
        try:
            if httpx2.get(url, timeout=5).json().get("ready"):
                return
        except (httpx2.TransportError, ValueError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not ready after {timeout} s")


def tokens_per_s(client: openai.OpenAI, concurrency: int, requests: int, max_tokens: int) -> float:
    def one(i: int) -> int:
        reply = client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": f"Tell me story number {i}."}],
            max_tokens=max_tokens,
            temperature=1.0,
        )
        return reply.usage.completion_tokens if reply.usage else 0

    one(-1)  # warm
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        produced = sum(pool.map(one, range(requests)))
    return produced / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    from appliance.tiny_model import build

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        model = build(directory / "tiny-llama")
        path, app_port, engine_port = config(directory, model)
        began = time.perf_counter()
        log = (directory / "appliance.log").open("wb")
        appliance = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appliance.cli",
                "serve",
                "--config",
                str(path),
                "--profile",
                "cpu",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(f"http://127.0.0.1:{app_port}/health/detailed", appliance, timeout=600)
            print(
                f"cold start (appliance + engine to ready): {time.perf_counter() - began:.1f} s",
                flush=True,
            )
            engine = next(
                p for p in psutil.Process(appliance.pid).children() if "serve" in p.cmdline()
            )
            key = engine.environ()["VLLM_API_KEY"]
            rss = sum(p.memory_info().rss for p in [engine, *engine.children(recursive=True)])
            print(f"engine resident memory: {rss / 2**30:.2f} GiB", flush=True)
            through = openai.OpenAI(base_url=f"http://127.0.0.1:{app_port}/v1", api_key="none")
            direct = openai.OpenAI(base_url=f"http://127.0.0.1:{engine_port}/v1", api_key=key)
            for concurrency in (1, 4):
                for name, client in (("appliance", through), ("direct", direct)):
                    rate = tokens_per_s(client, concurrency, args.requests, args.max_tokens)
                    print(
                        f"concurrency {concurrency}, {name:<9}: {rate:7.1f} output tokens/s",
                        flush=True,
                    )
        finally:
            appliance.send_signal(signal.SIGTERM)
            appliance.wait(120)


if __name__ == "__main__":
    main()
