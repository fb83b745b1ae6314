"""The host: CPU and memory through psutil, read in the background."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import psutil


@dataclass(frozen=True, slots=True)
class HostReading:
    cpu_percent: float
    cpu_count: int
    load_1m: float | None
    memory_total: int
    memory_available: int
    memory_percent: float
    process_rss: int


class HostMonitor:
    def __init__(self) -> None:
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)  # the first call only sets the reference point
        self.reading: HostReading | None = None

    def poll(self) -> HostReading:
        memory = psutil.virtual_memory()
        try:
            load: float | None = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
        self.reading = HostReading(
            cpu_percent=psutil.cpu_percent(interval=None),
            cpu_count=psutil.cpu_count() or 1,
            load_1m=load,
            memory_total=memory.total,
            memory_available=memory.available,
            memory_percent=memory.percent,
            process_rss=self._process.memory_info().rss,
        )
        return self.reading

    def snapshot(self) -> dict[str, Any]:
        r = self.reading
        if r is None:
            return {"state": "not read yet"}
        return {
            "state": "ok",
            "cpu_percent": r.cpu_percent,
            "cpu_count": r.cpu_count,
            "load_1m": round(r.load_1m, 2) if r.load_1m is not None else None,
            "memory_total_mib": r.memory_total // 2**20,
            "memory_available_mib": r.memory_available // 2**20,
            "memory_percent": r.memory_percent,
            "appliance_rss_mib": r.process_rss // 2**20,
        }
