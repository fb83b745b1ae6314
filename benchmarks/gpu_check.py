"""On a GPU host: the appliance's NVML readings beside nvidia-smi's, and the planner's view.

Reads every device a few times through the appliance's GPU monitor (the NVML seam) and, at the
same moments, through `nvidia-smi --query-gpu`, and prints them side by side with the
differences; lists MIG instances as NVML and `nvidia-smi -L` see them; then prints the devices
as the planner sees them (usable memory, the most the fractions may add up to, the name
CUDA_VISIBLE_DEVICES gets) and, with --profile, that profile's plan on these GPUs. Finishes in
well under two minutes. On a host without the NVIDIA driver it says so and exits 2. Usage:

    python benchmarks/gpu_check.py [--samples 5] [--interval 1] [--profile balanced]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.monitor.gpu import GpuMonitor
from appliance.monitor.nvml import GpuInfo
from appliance.placement import memory
from appliance.placement.gpus import GIB, MIB, from_nvml

FIELDS = (
    "index,uuid,name,memory.total,memory.used,memory.free,utilization.gpu,"
    "utilization.memory,temperature.gpu,mig.mode.current"
)
DEADLINE_S = 110.0
SMI_TIMEOUT_S = 20.0


def smi_rows() -> tuple[list[dict[str, str]], str | None]:
    """`nvidia-smi --query-gpu` as dicts, or ([], why not)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return [], "nvidia-smi is not on PATH"
    try:
        done = subprocess.run(
            [smi, f"--query-gpu={FIELDS}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=SMI_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return [], f"nvidia-smi took over {SMI_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        return [], said[-1] if said else f"nvidia-smi exited {done.returncode}"
    names = FIELDS.split(",")
    rows = []
    for line in done.stdout.strip().splitlines():
        values = [v.strip() for v in line.split(",")]
        rows.append(dict(zip(names, values, strict=False)))
    return rows, None


def smi_mig_uuids() -> list[str]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        done = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=SMI_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return []
    found = []
    for line in done.stdout.splitlines():
        if "MIG-" in line and "UUID:" in line:
            found.append(line.split("UUID:", 1)[1].strip(" )"))
    return found


def number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"


def cell(ours: float | None, theirs: float | None) -> str:
    left = "-" if ours is None else f"{ours:.0f}"
    right = "-" if theirs is None else f"{theirs:.0f}"
    diff = "" if ours is None or theirs is None else f" ({ours - theirs:+.0f})"
    return f"{left}/{right}{diff}"


def compare(gpus: list[GpuInfo], rows: list[dict[str, str]]) -> list[list[str]]:
    """One line per physical GPU: NVML/nvidia-smi pairs, MiB, percent, degrees."""
    whole = [g for g in gpus if g.mig_parent is None]
    lines = []
    for gpu in whole:
        physical = int(gpu.cuda_id) if gpu.cuda_id.isdigit() else gpu.index
        row = next((r for r in rows if r.get("index") == str(physical)), {})
        lines.append(
            [
                str(physical),
                gpu.name[:28],
                cell(gpu.memory_total / MIB, number(row.get("memory.total"))),
                cell(gpu.memory_used / MIB, number(row.get("memory.used"))),
                cell(gpu.memory_free / MIB, number(row.get("memory.free"))),
                cell(gpu.utilization_gpu, number(row.get("utilization.gpu"))),
                cell(gpu.utilization_memory, number(row.get("utilization.memory"))),
                cell(gpu.temperature_c, number(row.get("temperature.gpu"))),
            ]
        )
    return lines


def table(header: list[str], lines: list[list[str]]) -> str:
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--samples", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--profile", help="also plan this profile of --config on these GPUs")
    parser.add_argument("--config", default="models.toml")
    args = parser.parse_args()
    started = time.monotonic()

    monitor = GpuMonitor()
    monitor.poll()
    if not monitor.available:
        print(f"gpu_check: no GPU readings here ({monitor.state}); run it on a host with the "
              "NVIDIA driver", file=sys.stderr)  # fmt: skip
        return 2
    try:
        samples = max(1, args.samples)
        for n in range(samples):
            if n:
                time.sleep(args.interval)
            if time.monotonic() - started > DEADLINE_S:
                print(f"(stopped after {n} samples: the deadline of {DEADLINE_S:.0f} s)")
                break
            monitor.poll()
            rows, problem = smi_rows()
            print(f"sample {n + 1}/{samples} at {time.monotonic() - started:.1f} s "
                  "(NVML/nvidia-smi, difference)")  # fmt: skip
            if problem:
                print(f"  nvidia-smi: {problem}")
            header = ["GPU", "name", "total MiB", "used MiB", "free MiB", "util %", "mem util %",
                      "temp C"]  # fmt: skip
            print(table(header, compare(monitor.gpus, rows)))
            print()
        gpus = list(monitor.gpus)
    finally:
        monitor.close()

    migs = [g for g in gpus if g.mig_parent is not None]
    smi_migs = smi_mig_uuids()
    if migs or smi_migs:
        print("MIG instances (NVML | nvidia-smi -L):")
        for g in migs:
            seen = "yes" if g.cuda_id in smi_migs else "NOT LISTED"
            print(f"  GPU {g.mig_parent} {g.name}: {g.memory_total / GIB:.1f} GiB, "
                  f"{g.cuda_id} (in nvidia-smi -L: {seen})")  # fmt: skip
        missing = [u for u in smi_migs if u not in {g.cuda_id for g in migs}]
        for uuid in missing:
            print(f"  {uuid}: listed by nvidia-smi, NOT read through NVML")
        print()

    planned = from_nvml(gpus)
    header = ["device", "name", "CUDA_VISIBLE_DEVICES", "total GiB", "usable GiB", "free GiB",
              "max fraction", "MIG"]  # fmt: skip
    lines = [
        [
            str(g.index),
            g.name[:28],
            g.cuda_name,
            f"{g.total / GIB:.1f}",
            f"{memory.usable_bytes(g) / GIB:.1f}",
            f"{g.free / GIB:.1f}",
            f"{memory.limit_fraction(g):.2f}",
            "yes" if g.mig else "no",
        ]
        for g in planned
    ]
    print("The planner's view of these devices:")
    print(table(header, lines))
    if args.profile:
        from appliance.config import load_config
        from appliance.placement.check import plan_profile
        from appliance.placement.render import render_plan

        config = load_config(args.config, profile=args.profile)
        plan = plan_profile(
            config.profile, config.engines, config.catalog, read=lambda: gpus, source=args.config
        )
        print()
        print(render_plan(plan))
    print(f"\ndone in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
