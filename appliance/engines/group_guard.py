"""The group guard: ends an engine's whole process group when the appliance dies, however it dies.

    python -m appliance.engines.group_guard PGID APPLIANCE_PID

The kernel's parent-death signal reaches only the engine's direct child; vLLM's EngineCore and
worker processes are its grandchildren, and a SIGKILLed appliance (or an OOM kill) would leave
them holding GPU memory, so that the next start fails. One guard per engine, started by the
spawner in its own session, asks the kernel for SIGHUP when the appliance ends and then SIGKILLs
the group. It leaves on its own once the group is empty (the engine stopped or was restarted).
Standard library only: it starts in a blink and holds no resources worth noting.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import time
from types import FrameType

_PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def members(pgid: int) -> list[int]:
    """Live (not zombie) processes of group `pgid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z" and int(fields[2]) == pgid:
            found.append(int(entry))
    return found


def end_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    pgid, appliance = int(argv[0]), int(argv[1])

    def appliance_gone(signum: int, frame: FrameType | None) -> None:
        end_group(pgid)
        os._exit(0)

    signal.signal(signal.SIGHUP, appliance_gone)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGHUP, 0, 0, 0)
    if os.getppid() != appliance:  # it ended before the request took hold
        appliance_gone(signal.SIGHUP, None)
    while members(pgid):
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
