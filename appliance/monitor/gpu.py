"""GPU memory, utilization and temperature per device, read through the NVML seam.

NVML stays initialised between readings; each reading runs in a worker thread (NVML calls block).
A host without the driver or the library is a normal state, "unavailable: <reason>", retried now
and then (a driver can be installed while the appliance runs), never a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from appliance.errors import NvmlUnavailable
from appliance.monitor.nvml import GpuInfo, NvmlBackend, RealNvml, read_devices

log = logging.getLogger("appliance.monitor.gpu")


class GpuMonitor:
    def __init__(
        self,
        backend_factory: Callable[[], NvmlBackend] = RealNvml,
        *,
        retry_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._factory = backend_factory
        self.retry_s = retry_s
        self._clock = clock
        self._nvml: NvmlBackend | None = None
        self._next_init = 0.0
        self.gpus: list[GpuInfo] = []
        self.reason: str | None = None
        self.polled = False
        self.read_at = 0.0

    @property
    def available(self) -> bool:
        return self.polled and self.reason is None

    @property
    def state(self) -> str:
        if not self.polled:
            return "not read yet"
        return "ok" if self.reason is None else f"unavailable: {self.reason}"

    def poll(self) -> None:
        """Take one reading (blocking: run it in a thread). Never raises."""
        now = self._clock()
        first, self.polled = not self.polled, True
        if self._nvml is None:
            if now < self._next_init:
                return
            self._next_init = now + self.retry_s
            try:
                backend = self._factory()
                backend.init()
            except NvmlUnavailable as exc:
                self._unavailable(exc.reason)
                return
            except Exception as exc:  # a broken binding must not take the appliance down
                self._unavailable(f"{type(exc).__name__}: {exc}")
                return
            self._nvml = backend
        try:
            gpus = read_devices(self._nvml)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, NvmlUnavailable) else f"{type(exc).__name__}"
            self._close()
            self._unavailable(reason)
            return
        if first or self.reason is not None:
            log.info("NVML: %d GPU(s) visible", len(gpus))
        self.gpus, self.reason, self.read_at = gpus, None, now

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            try:
                nvml.shutdown()
            except Exception:
                log.debug("NVML shutdown failed", exc_info=True)

    def _unavailable(self, reason: str) -> None:
        if reason != self.reason:
            log.info("GPU monitor: NVML unavailable: %s", reason)
        self.gpus, self.reason = [], reason

    def snapshot(self) -> dict[str, Any]:
        """For `/health/detailed`: the state and each device, memory in MiB."""
        devices = [
            {
                "index": gpu.index,
                "name": gpu.name,
                "memory_total_mib": gpu.memory_total // 2**20,
                "memory_used_mib": gpu.memory_used // 2**20,
                "memory_free_mib": gpu.memory_free // 2**20,
                "utilization_percent": gpu.utilization_gpu,
                "memory_utilization_percent": gpu.utilization_memory,
                "temperature_c": gpu.temperature_c,
            }
            for gpu in self.gpus
        ]
        return {"state": self.state, "devices": devices}
