"""`python -m appliance.simulator`: flags with vLLM's names, then a uvicorn server on one socket.

vLLM's GPU flags are accepted and ignored (one log line), and the model may come as a positional
argument, so a fake `vllm serve` can pass its argv straight through. The API key may come from
`VLLM_API_KEY`, as with vLLM, which keeps it out of the process list. A slow start sleeps before
the port is bound, like a model load: until then connections are refused.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import math
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType

from appliance.simulator import latency
from appliance.simulator.options import SimOptions

log = logging.getLogger("appliance.simulator")

# vLLM flags that only matter on a GPU: name -> takes a value.
IGNORED_FLAGS: dict[str, bool] = {
    "--tensor-parallel-size": True,
    "--gpu-memory-utilization": True,
    "--quantization": True,
    "--dtype": True,
    "--max-num-batched-tokens": True,
    "--download-dir": True,
    "--generation-config": True,
    "--disable-access-log-for-endpoints": True,
    "--max-log-len": True,
    "--disable-log-requests": False,
    "--disable-log-stats": False,
    "--trust-remote-code": False,
    # The appliance sets it on every vllm engine; the simulator's answers are always schema-valid.
    "--structured-outputs-config": True,
    "--enforce-eager": False,
}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def main(argv: Sequence[str] | None = None) -> int:
    options, ignored, uvicorn_level = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    _log_start(options, ignored)
    signal.signal(signal.SIGTERM, _stop)
    try:
        if options.slow_start_s > 0:
            log.info("simulating a model load: %.1f s before listening", options.slow_start_s)
            time.sleep(options.slow_start_s)
        sock = _listen(options.host, options.port)
    except _Stopped:
        log.info("stopped before listening")
        return 0
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", options.host, options.port, exc.strerror or exc)
        return 1
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _serve(options, sock, uvicorn_level)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> tuple[SimOptions, list[str], str]:
    """Resolved options, the ignored GPU flags that were given, and uvicorn's log level."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["serve"]:  # `vllm serve MODEL ...` passed through whole
        args_in = args_in[1:]
    parser = build_parser()
    args = parser.parse_args(args_in)
    model = args.model or args.model_tag
    if not model:
        parser.error("a model is required: MODEL or --model MODEL")
    if args.model and args.model_tag and args.model != args.model_tag:
        parser.error(f"two different models given: {args.model_tag!r} and --model {args.model!r}")
    ignored = [
        flag for flag in (*IGNORED_FLAGS, "--enable-prefix-caching") if hasattr(args, _dest(flag))
    ]
    options = SimOptions(
        model=model,
        served_model_names=tuple(args.served_model_name or [model]),
        host=args.host,
        port=args.port,
        api_key=args.api_key or os.environ.get("VLLM_API_KEY") or None,
        max_num_seqs=args.max_num_seqs,
        max_model_len=args.max_model_len,
        size_class=args.size_class or latency.size_class_of(model) or latency.DEFAULT_SIZE_CLASS,
        decode_tokens_per_s=args.decode_tokens_per_s,
        prefill_tokens_per_s=args.prefill_tokens_per_s,
        batch_slowdown=args.batch_slowdown,
        kv_cache_tokens=args.kv_cache_tokens,
        time_scale=args.time_scale,
        seed=args.seed,
        error_rate=args.error_rate,
        stall_rate=args.stall_rate,
        stall_s=args.stall_s,
        crash_after=args.crash_after,
        slow_start_s=args.slow_start_s,
        malformed_rate=args.malformed_rate,
        legacy_metric_names=args.legacy_metric_names,
    )
    return options, ignored, args.uvicorn_log_level


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.simulator",
        description="A vLLM-compatible simulator engine with synthetic answers and modelled "
        "latency.",
    )
    add = parser.add_argument
    add("model_tag", nargs="?", metavar="MODEL", help="the model (as in `vllm serve MODEL`)")
    add("--model", help="the model name")
    add(
        "--served-model-name",
        nargs="+",
        metavar="NAME",
        help="names clients use (default: the model)",
    )
    add("--host", default="127.0.0.1")
    add("--port", type=_port, default=8000)
    add("--api-key", help="required as a Bearer token on /v1 (default: $VLLM_API_KEY)")
    add("--max-num-seqs", type=_positive_int, default=256)
    add("--max-model-len", type=_positive_int, default=8192)
    add("--uvicorn-log-level", choices=LOG_LEVELS, default="warning")
    sim = parser.add_argument_group("simulator")
    sim.add_argument(
        "--size-class",
        choices=sorted(latency.SIZE_CLASSES, key=_size_key),
        help="latency defaults (default: from the model name, else 8B)",
    )
    sim.add_argument("--decode-tokens-per-s", type=_positive_float)
    sim.add_argument("--prefill-tokens-per-s", type=_positive_float)
    sim.add_argument("--batch-slowdown", type=_non_negative, default=0.02)
    sim.add_argument(
        "--kv-cache-tokens",
        type=_positive_int,
        help="KV-cache budget (default: max-model-len x max-num-seqs / 2)",
    )
    sim.add_argument(
        "--time-scale",
        type=_non_negative,
        default=1.0,
        help="multiplies every modelled delay; 0 = none",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--error-rate", type=_probability, default=0.0)
    sim.add_argument("--stall-rate", type=_probability, default=0.0)
    sim.add_argument("--stall-s", type=_non_negative, default=30.0)
    sim.add_argument("--crash-after", type=_positive_int)
    sim.add_argument("--slow-start-s", type=_non_negative, default=0.0)
    sim.add_argument("--malformed-rate", type=_probability, default=0.0)
    sim.add_argument(
        "--legacy-metric-names",
        action="store_true",
        help="vllm:gpu_cache_usage_perc instead of vllm:kv_cache_usage_perc",
    )
    gpu = parser.add_argument_group("vLLM GPU flags (accepted and ignored)")
    for flag, takes_value in IGNORED_FLAGS.items():
        if takes_value:
            gpu.add_argument(flag, default=argparse.SUPPRESS, metavar="VALUE")
        else:
            gpu.add_argument(flag, action="store_true", default=argparse.SUPPRESS)
    gpu.add_argument(
        "--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS
    )
    return parser


def _serve(options: SimOptions, sock: socket.socket, log_level: str) -> None:
    import uvicorn

    from appliance.simulator.server import Simulator

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                host, port = sock.getsockname()[:2]
                log.info("ready: listening on http://%s:%d", host, port)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            log.info("stopping")
            await super().shutdown(sockets)

    config = uvicorn.Config(
        Simulator(options),
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        access_log=False,
        log_config=None,
        log_level=log_level,
        timeout_graceful_shutdown=5,
    )
    Server(config).run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.create_server((host, port), family=family, backlog=2048)
    sock.set_inheritable(False)
    return sock


def _log_start(options: SimOptions, ignored: list[str]) -> None:
    profile = options.profile()
    log.info(
        "starting: model %s served as %s, size class %s, decode %.1f tokens/s, prefill %.0f "
        "tokens/s, max_num_seqs %d, max_model_len %d, KV budget %d tokens, time scale %g",
        options.model,
        ", ".join(options.served_model_names),
        options.size_class,
        profile.decode_tokens_per_s,
        profile.prefill_tokens_per_s,
        options.max_num_seqs,
        options.max_model_len,
        options.kv_budget,
        options.time_scale,
    )
    faults = {
        name: getattr(options, name)
        for name in ("error_rate", "stall_rate", "malformed_rate", "crash_after")
        if getattr(options, name)
    }
    if faults:
        log.info("faults: %s", ", ".join(f"{k}={v}" for k, v in faults.items()))
    if ignored:
        log.info("ignoring GPU flags: %s", " ".join(ignored))


class _Stopped(Exception):
    pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _size_key(size_class: str) -> float:
    return float(size_class.rstrip("B"))


def _number(text: str, kind: type[float] | type[int]) -> float:
    noun = "an integer" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text}")
    return value


def _port(text: str) -> int:
    value = int(_number(text, int))
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = _number(text, float)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {text}")
    return value


def _probability(text: str) -> float:
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1, got {text}")
    return value
