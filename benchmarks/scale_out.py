"""Scale-out capacity: `appliance bench sweep` through HAProxy in front of 1, 2 and 3 hosts.

Each host is `appliance serve` with one simulated engine of `--slots` concurrent sequences; HAProxy
runs with the configuration the `kai_frontdoor` role renders (so ansible-playbook and haproxy must
be installed: `.ci/setup-ops.sh`). Hosts share loopback on ports of their own, or with `--netns`
(root) live in network namespaces of their own. For each host count the sweep doubles concurrency
until the agent's P95 objective breaks; the figure is the request rate at the highest concurrency
that kept it, and its ratio to one host.

On a small machine the hosts compete for the same CPU cores. The simulator's time scale is kept
large enough (default 0.5: answers take half the guide's real time) that the engines' slots, not
the CPU, bound the rate; the script prints the CPU time the hosts used so a reader can check.

    python benchmarks/scale_out.py                 # guardrail, 14 slots per host, 1-3 hosts
    python benchmarks/scale_out.py --slots 8 --per-host 4 --time-scale 1.0

A sweep doubles concurrency (1, 2, 4, 8, ...), so its capacity is resolved to powers of two: with
10 slots per host for benchmark requests (the Guardrail keeps the rest), 3 hosts are judged at 16
and 32 and the sweep's figure for 3 hosts is the rate at 16. So the script also runs one level at
`--per-host` requests in flight per host (`appliance bench run --concurrency hosts x per-host`)
and prints its rate and its P95 against the objective: the same load per host, more hosts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cluster import API_KEY, Cluster

# [admission] guardrail_reserve of the shipped models.toml.
GUARDRAIL_RESERVE = 0.25


def cpu_seconds(cluster: Cluster) -> float:
    """User + system CPU of every host's processes (the appliances and their engines) so far."""
    total = 0.0
    for host in cluster.members:
        if host.proc is None:
            continue
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(host.proc.pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    total += times.user + times.system
    return total


def bench(cluster: Cluster, agent: str, out: Path, command: str, *options: str) -> dict:
    """`appliance bench sweep|run` through the front door; its JSON report."""
    config = cluster.members[0].directory / "models.toml"
    report = out / f"{command}-{len(cluster.members)}.json"
    argv = [
        sys.executable,
        "-m",
        "appliance.cli",
        "bench",
        command,
        "--config",
        str(config),
        "--db",
        str(out / f"{command}.sqlite3"),
        "--base-url",
        cluster.url + "/v1",
        "--api-key",
        API_KEY,
        "--agents",
        agent,
        "--no-mix",
        *options,
        "--report",
        str(report),
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    if not report.exists():
        raise RuntimeError(f"the {command} wrote no report:\n{result.stdout}\n{result.stderr}")
    if result.returncode != 0:
        print(
            f"bench {command}: exit {result.returncode}\n{result.stdout[-1500:]}", file=sys.stderr
        )
    return json.loads(report.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agent", default="guardrail")
    parser.add_argument("--hosts", default="1,2,3", help="host counts to sweep")
    parser.add_argument("--slots", type=int, default=14, help="max_num_seqs of each host's engine")
    parser.add_argument(
        "--per-host",
        type=int,
        default=8,
        help="requests in flight per host for the fixed level (default 8, a power of two)",
    )
    parser.add_argument("--time-scale", type=float, default=0.5)
    parser.add_argument("--max-concurrency", type=int, default=32)
    parser.add_argument("--netns", action="store_true", help="hosts in network namespaces (root)")
    args = parser.parse_args()

    # Slots a benchmark request may use on one host: the guardrail keeps a reserve of the rest.
    reserve = min(math.ceil(args.slots * GUARDRAIL_RESERVE), args.slots - 1)
    per_host = args.per_host
    if per_host > args.slots - reserve:
        parser.error(f"--per-host {per_host} exceeds the {args.slots - reserve} benchmark slots")
    rows = []
    with tempfile.TemporaryDirectory(prefix="scale-out-") as tmp:
        for count in (int(n) for n in args.hosts.split(",")):
            directory = Path(tmp) / f"hosts-{count}"
            directory.mkdir()
            with Cluster(
                directory,
                hosts=count,
                netns=args.netns,
                time_scale=args.time_scale,
                max_num_seqs=args.slots,
            ) as cluster:
                cpu_before, started = cpu_seconds(cluster), time.monotonic()
                limit = ("--max-concurrency", str(args.max_concurrency))
                swept = bench(cluster, args.agent, directory, "sweep", *limit)
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(cluster) - cpu_before
                level = ("--concurrency", str(count * per_host))
                level += ("--requests", str(6 * count * per_host))
                at_slots = bench(cluster, args.agent, directory, "run", *level)
            capacity = swept.get("capacity", {}).get(args.agent, {})
            rows.append((count, capacity, cpu / elapsed if elapsed else 0.0, at_slots))
            print(
                f"{count} host(s): max concurrency {capacity.get('max_concurrency')}, "
                f"{capacity.get('request_rate') or 0:.2f} req/s, sweep {elapsed:.0f} s "
                f"({capacity.get('limited_by', '')})",
                file=sys.stderr,
            )

    base = next((c.get("request_rate") for n, c, _, _ in rows if n == 1), None)
    print(
        f"\nScale-out sweep (appliance bench sweep through HAProxy): agent {args.agent}, "
        f"{args.slots} slots per host ({args.slots - reserve} for benchmark requests), simulator time scale "
        f"{args.time_scale}, {os.cpu_count()} CPU cores shared by every host"
    )
    print(f"{'hosts':>5}  {'max conc.':>9}  {'req/s at P95 objective':>22}  {'ratio':>6}  "
          f"{'host CPU':>8}  |  {'fixed level':>11}  {'req/s':>6}  {'ratio':>6}  P95")  # fmt: skip
    base_slots = None
    for count, capacity, cpu_load, at_slots in rows:
        rate = capacity.get("request_rate")
        ratio = f"{rate / base:.2f}x" if rate and base else "-"
        result = (at_slots.get("summary") or [{}])[0]
        slot_rate = (at_slots.get("results") or [{}])[0].get("request_throughput")
        if count == 1:
            base_slots = slot_rate
        slot_ratio = f"{slot_rate / base_slots:.2f}x" if slot_rate and base_slots else "-"
        verdict = (result.get("p95_verdict") or {}).get("verdict", "-")
        print(
            f"{count:>5}  {capacity.get('max_concurrency') or '-':>9}  "
            f"{(f'{rate:.2f}' if rate else '-'):>22}  {ratio:>6}  {cpu_load:>7.2f}c  |  "
            f"{'c=' + str(count * per_host):>11}  {(f'{slot_rate:.2f}' if slot_rate else '-'):>6}  "
            f"{slot_ratio:>6}  {verdict}"
        )
    print(
        "\nhost CPU: cores the hosts' processes kept busy during the sweep. A sweep doubles "
        "concurrency, so its capacity is a power of two; the right-hand columns run one level "
        f"at {per_host} requests in flight per host (P95 against the objective band: better, "
        "within or worse)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
