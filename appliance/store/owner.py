"""Who owns a run: host, pid and process start time, so a run left `running` by a process that
is gone can be told from one that a live process (the CLI beside the service) is still making."""

from __future__ import annotations

import os
import socket

import psutil


def this_process() -> tuple[str, int, float]:
    return socket.gethostname(), os.getpid(), psutil.Process().create_time()


def owner_alive(host: str | None, pid: int | None, started: float | None) -> bool:
    if host != socket.gethostname() or pid is None or started is None:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        created: float = proc.create_time()
        return abs(created - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
