"""`appliance breaker`: see and reset the circuit breakers of a running appliance.

It talks to the appliance's admin routes, so it works wherever the API is reachable:

    appliance breaker status
    appliance breaker reset            # every engine
    appliance breaker reset llama-70b  # one engine
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx2

DEFAULT_URL = "http://127.0.0.1:8000"


def add_breaker_parser(sub: Any) -> None:
    parser = sub.add_parser(
        "breaker", help="see or reset the circuit breakers of a running appliance"
    )
    actions = parser.add_subparsers(dest="breaker_command", metavar="ACTION", required=True)
    status = actions.add_parser("status", help="show every engine's breaker")
    _connection_args(status)
    status.set_defaults(handler=cmd_status)
    reset = actions.add_parser("reset", help="close the breaker of ENGINE, or of every engine")
    reset.add_argument("engine", nargs="?", metavar="ENGINE", help="engine id (default: all)")
    _connection_args(reset)
    reset.set_defaults(handler=cmd_reset)


def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        default=os.environ.get("APPLIANCE_URL", DEFAULT_URL),
        help=f"the appliance's URL (default: $APPLIANCE_URL or {DEFAULT_URL}; a trailing /v1 is ignored)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("APPLIANCE_API_KEY", ""),
        help="an API key of the appliance (default: $APPLIANCE_API_KEY)",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def cmd_status(args: argparse.Namespace) -> int:
    body = _call(args, "GET", "/admin/breakers")
    if body is None:
        return 1
    _print_breakers(body["breakers"])
    return 0


def cmd_reset(args: argparse.Namespace) -> int:
    path = f"/admin/breakers/{args.engine}/reset" if args.engine else "/admin/breakers/reset"
    body = _call(args, "POST", path)
    if body is None:
        return 1
    print(f"reset: {', '.join(body['reset'])}")
    _print_breakers(body["breakers"])
    return 0


def _call(args: argparse.Namespace, method: str, path: str) -> dict[str, Any] | None:
    """The JSON answer, or None after printing why there is none."""
    base = args.base_url.rstrip("/")
    base = base.removesuffix("/v1")
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        response = httpx2.request(
            method, base + path, headers=headers, timeout=args.timeout, trust_env=False
        )
    except httpx2.HTTPError as exc:
        print(f"appliance: cannot reach {base}: {type(exc).__name__}", file=sys.stderr)
        return None
    if response.status_code != 200:
        print(f"appliance: {method} {path}: {_error(response)}", file=sys.stderr)
        return None
    body: dict[str, Any] = response.json()
    return body


def _error(response: httpx2.Response) -> str:
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.reason_phrase
    return f"HTTP {response.status_code}: {message}"


def _print_breakers(breakers: dict[str, dict[str, Any]]) -> None:
    width = max((len(engine) for engine in breakers), default=6)
    print(f"{'engine':<{width}}  state      failures  opened  retry after")
    for engine, view in sorted(breakers.items()):
        retry = f"{view['retry_after_s']} s" if view["state"] == "open" else "-"
        print(
            f"{engine:<{width}}  {view['state']:<9}  {view['failures']:>8}  "
            f"{view['times_opened']:>6}  {retry}"
        )
