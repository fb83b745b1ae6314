"""The `appliance` command: serve, check, config, plan, bench, breaker."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from appliance import __version__
from appliance.errors import ApplianceError, ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"appliance: configuration error: {exc}", file=sys.stderr)
        return 2
    except ApplianceError as exc:
        print(f"appliance: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the appliance: engines and the API")
    _config_args(serve)
    serve.add_argument("--host", help="listen address (default: [server].host)")
    serve.add_argument("--port", type=int, help="listen port (default: [server].port)")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=cmd_serve)

    check = sub.add_parser("check", help="connection test against the appliance or any vLLM")
    check.add_argument(
        "--base-url", default=os.environ.get("LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    check.add_argument(
        "--api-key",
        default=os.environ.get("APPLIANCE_API_KEY") or os.environ.get("LLM_API_KEY", "EMPTY"),
    )
    check.add_argument(
        "--model", help="model or agent to test (default: kai, else the first listed)"
    )
    check.add_argument("--samples", type=int, default=5, help="latency samples (default 5)")
    # Environment defaults are read when the command runs: a bad value must not break `--help`.
    check.add_argument("--timeout", type=float, help="seconds (default: $LLM_TIMEOUT or 30)")
    check.set_defaults(handler=cmd_check)

    config = sub.add_parser("config", help="show or validate the configuration")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_sub.add_parser("show", help="print the resolved configuration as JSON")
    _config_args(show)
    show.set_defaults(handler=cmd_config_show)
    validate = config_sub.add_parser("validate", help="check the configuration; exit 2 if wrong")
    _config_args(validate)
    validate.set_defaults(handler=cmd_config_validate)

    _optional_commands(sub)
    return parser


def _optional_commands(sub: Any) -> None:
    """Commands whose code lives with their concern."""
    from appliance.bench.cli import add_bench_parser
    from appliance.gateway.admin_cli import add_breaker_parser
    from appliance.placement.cli import add_plan_parser

    add_plan_parser(sub)
    add_bench_parser(sub)
    add_breaker_parser(sub)


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="models.toml path (default: $APPLIANCE_CONFIG or ./models.toml)"
    )
    parser.add_argument("--profile", help="profile in models.toml (default: its `profile`)")


def _load(args: argparse.Namespace) -> Any:
    from appliance.config import load_config

    return load_config(args.config, profile=args.profile)


def cmd_config_validate(args: argparse.Namespace) -> int:
    from appliance.preflight import preflight

    config = _load(args)
    # The same checks `serve` makes, short of starting anything.
    preflight(config, host=config.server.host)

    from appliance.engines import vllm

    for engine in config.engines:
        if engine.kind == "vllm":
            vllm.check_engine(engine)
    engines = ", ".join(f"{e.id} ({e.kind})" for e in config.engines)
    print(f"{config.source}: valid; profile {config.profile}; engines: {engines}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    import msgspec

    config = _load(args)
    data = msgspec.to_builtins(config)
    data.pop("profiles", None)
    data.pop("catalog", None)
    for engine in data["engines"]:
        if engine.get("api_key"):
            engine["api_key"] = "***"
    data["security"]["api_keys"] = ["***"] * len(data["security"]["api_keys"])
    print(json.dumps(data, indent=2))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from appliance.check import run_checks
    from appliance.config.load import env_timeout

    timeout = args.timeout if args.timeout is not None else env_timeout(os.environ, 30.0)
    return run_checks(
        args.base_url, args.api_key, model=args.model, samples=args.samples, timeout=timeout
    )


def cmd_serve(args: argparse.Namespace) -> int:
    from appliance.instance import hold_data_dir
    from appliance.preflight import preflight
    from appliance.server import serve

    config = _load(args)
    host = args.host or config.server.host
    port = args.port or config.server.port
    # Everything that would refuse the configuration, before a log line or a process starts.
    preflight(config, host=host, create=True)
    lock = hold_data_dir(config)  # held until this process ends
    configure_logging(args.log_level or config.server.log_level)
    try:
        return serve(config, host=host, port=port)
    finally:
        lock.close()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Per-request lines from the HTTP client libraries are noise (and cost time on the hot path);
    # the scheduler's job bookkeeping too (the benchmark scheduler logs what matters).
    for noisy in ("httpx2", "httpcore2", "httpx", "httpcore", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
