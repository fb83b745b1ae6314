"""`appliance plan`: will the profile's engines fit the GPUs, and if not, what would?

Exit status: 0 when the plan fits, 1 when it does not (with the numbers and the changes that
would fit), 2 on bad input (no such file or profile, an unreadable --gpus).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import msgspec

from appliance.config import read_raw
from appliance.config.schema import RawConfig
from appliance.errors import ConfigError, NvmlUnavailable
from appliance.monitor.nvml import GpuInfo, NvmlBackend, read_gpus
from appliance.placement.check import Reader, plan_profile, resolve_gpus
from appliance.placement.gpus import SPEC_HELP
from appliance.placement.plan import Plan
from appliance.placement.render import render_plan


def add_plan_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan",
        help="place the vLLM engines on the GPUs; explain what does not fit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="models.toml path (default: $APPLIANCE_CONFIG or ./models.toml)"
    )
    parser.add_argument("--profile", help="profile to plan (default: the file's `profile`)")
    parser.add_argument("--gpus", metavar="SPEC", help=f"plan for declared GPUs: {SPEC_HELP}")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.add_argument("--all", action="store_true", help="plan every profile in the file")
    parser.set_defaults(handler=run_plan)
    return parser


def run_plan(args: argparse.Namespace, *, nvml: NvmlBackend | None = None) -> int:
    """Print the plan(s); `nvml` replaces the real NVML (tests)."""
    try:
        raw = read_raw(args.config)
        source = args.config or os.environ.get("APPLIANCE_CONFIG", "models.toml")
        names = _profiles(raw, args, source)
        if args.gpus is not None:
            resolve_gpus(args.gpus, "none")  # a bad spec is bad input even where unused
        read = _reader(nvml)
        plans = [_plan(raw, name, source, args.gpus, read) for name in names]
    except ConfigError as exc:
        print(f"appliance plan: {exc}", file=sys.stderr)
        return 2
    if args.json:
        payload: object = plans if args.all else plans[0]
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(payload)).decode() + "\n")
    else:
        print("\n\n".join(render_plan(p) for p in plans))
    return _status(raw, plans)


def _profiles(raw: RawConfig, args: argparse.Namespace, source: str) -> list[str]:
    if args.all:
        return list(raw.profiles)
    name = args.profile or os.environ.get("APPLIANCE_PROFILE") or raw.profile
    if name not in raw.profiles:
        raise ConfigError(source, "profile", f"one of {sorted(raw.profiles)}", got=repr(name))
    return [name]


def _reader(nvml: NvmlBackend | None) -> Reader:
    """NVML read at most once however many profiles are planned; a refusal is remembered too."""
    result: list[GpuInfo] | NvmlUnavailable | None = None

    def read() -> list[GpuInfo]:
        nonlocal result
        if result is None:
            try:
                result = read_gpus(nvml)
            except NvmlUnavailable as exc:
                result = exc
        if isinstance(result, NvmlUnavailable):
            raise result
        return result

    return read


def _plan(raw: RawConfig, name: str, source: str, gpus: str | None, read: Reader) -> Plan:
    profile = raw.profiles[name]
    return plan_profile(
        name,
        profile.engines,
        raw.catalog,
        gpus=gpus,
        declared=profile.gpus,
        source=source,
        read=read,
    )


def _status(raw: RawConfig, plans: list[Plan]) -> int:
    """1 when a plan does not fit; with several, example-only profiles are expected not to."""
    if len(plans) == 1:
        return 0 if plans[0].feasible else 1
    runnable = [p for p in plans if not raw.profiles[p.profile].example_only]
    return 0 if all(p.feasible for p in runnable) else 1
