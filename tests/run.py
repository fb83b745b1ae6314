"""The project's test command: lint, type-check, then the whole test suite.

Run it with the virtual environment's Python (see README): `.venv/bin/python tests/run.py`.
Extra arguments go to pytest, e.g. `tests/run.py -k supervisor`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
STEPS: list[tuple[str, list[str]]] = [
    ("ruff check", [PY, "-m", "ruff", "check", "appliance", "tests", "benchmarks"]),
    ("ruff format", [PY, "-m", "ruff", "format", "--check", "appliance", "tests", "benchmarks"]),
    ("mypy", [PY, "-m", "mypy"]),
]


def main(argv: list[str]) -> int:
    for name, command in STEPS:
        print(f"== {name}", flush=True)
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            print(f"== {name} failed", flush=True)
            return 1
    print("== pytest", flush=True)
    return subprocess.run(
        [PY, "-m", "pytest", "-p", "no:cacheprovider", *argv], cwd=ROOT
    ).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
