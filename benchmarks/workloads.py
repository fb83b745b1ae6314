"""The benchmark workloads in figures, and what the benchmark client costs per stream chunk.

Prints, per agent, what `appliance bench` sends: messages, prompt size (characters and an estimate
of tokens at four characters per token, before the agent's system prompt), answer length (the
`max_tokens` sent with `ignore_eos`, capped by the agent's `max_tokens` in models.toml), and the
composition of the realistic mix. Then it times the client's per-chunk work (SSE line, JSON decode,
timestamps) on a canned stream over an in-memory transport, so no network or server is measured.

    python benchmarks/workloads.py [--config models.toml] [--seed 0] [--count 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter

import httpx2

from appliance.bench.client import StreamClient, Target
from appliance.bench.workloads import SHAPES, BenchRequest, Workload
from appliance.config import load_config

CHUNKS = 2000


def describe(requests: list[BenchRequest]) -> str:
    chars = [sum(len(m["content"]) for m in r.messages) for r in requests]
    msgs = [len(r.messages) for r in requests]
    out = [r.max_tokens for r in requests]
    return (
        f"messages {statistics.median(msgs):>4.0f}   prompt chars p50 {statistics.median(chars):>6.0f}"
        f" (~{statistics.median(chars) / 4:>5.0f} tok)   answer tokens p50 "
        f"{statistics.median(out):>4.0f}  min {min(out):>4}  max {max(out):>4}"
    )


async def client_overhead() -> tuple[float, float]:
    """Microseconds of client work per chunk, and chunks per second one event loop handles."""
    chunk = {"choices": [{"index": 0, "delta": {"content": "tok"}}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": CHUNKS}}
    body = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in [chunk] * CHUNKS)
    body += b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, content=body))
    target = Target(agent="kai", base_url="http://bench.test/v1", model="m")
    req = BenchRequest("kai", ({"role": "user", "content": "(synthetic benchmark text)"},), 1)
    async with StreamClient(transport=transport) as client:
        await client.send(target, req, phase=0, seq=0, t0=0.0)  # warm up
        rounds = 5
        start = time.perf_counter()
        for _ in range(rounds):
            sample = await client.send(target, req, phase=0, seq=0, t0=0.0)
        elapsed = time.perf_counter() - start
    assert sample.completion_tokens == CHUNKS
    per_chunk = elapsed / (rounds * CHUNKS)
    return per_chunk * 1e6, 1 / per_chunk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="models.toml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    config = load_config(args.config, env={})
    workload = Workload(args.seed, {a: c.max_tokens for a, c in config.agents.items()})
    print(f"workloads (seed {args.seed}, {args.count} requests each; caps from {args.config})")
    for agent in SHAPES:
        cap = config.agents[agent].max_tokens
        print(f"  {agent:<9} {describe(workload.agent_requests(agent, args.count))}   cap {cap}")
    mix = workload.mix_requests(args.count * 4)
    counts = Counter(r.agent for r in mix)
    turns = counts["kai"]
    shares = ", ".join(f"{a} {counts[a] / turns:.2f}" for a in SHAPES)
    print(f"  mix       per Kai turn: {shares}")
    micro, rate = asyncio.run(client_overhead())
    print(f"client: {micro:.1f} us per stream chunk (~{rate:,.0f} chunks/s on one event loop)")


if __name__ == "__main__":
    main()
