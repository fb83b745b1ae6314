"""Record a `vllm` invocation, then become the simulator with the same serve arguments.

Each call appends one JSON line to the file named by FAKE_VLLM_RECORD: the pid, the arguments
after the executable, and the environment. Then it execs `python -m appliance.simulator` with
those arguments, so the process the supervisor started is the one that serves.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    args = sys.argv[1:]
    record = os.environ.get("FAKE_VLLM_RECORD")
    if record:
        line = json.dumps({"pid": os.getpid(), "argv": args, "env": dict(os.environ)})
        with open(record, "a", encoding="utf-8") as out:
            out.write(line + "\n")
    if args[:1] != ["serve"]:
        sys.stderr.write(f"fake vllm: only `vllm serve` is supported, got {args[:1]}\n")
        raise SystemExit(2)
    os.execv(sys.executable, [sys.executable, "-m", "appliance.simulator", *args])  # noqa: S606


if __name__ == "__main__":
    main()
