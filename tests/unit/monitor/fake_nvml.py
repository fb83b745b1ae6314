"""A stand-in NVML for hosts without NVIDIA GPUs: devices as data, failures on request."""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.errors import NvmlQueryError, NvmlUnavailable
from appliance.monitor.nvml import MigInstance

GIB = 1 << 30


@dataclass
class FakeDevice:
    name: str = "NVIDIA A100-SXM4-40GB"
    total: int = 40 * GIB
    used: int = 0
    utilization: tuple[int, int] | None = (12, 3)  # None: not supported
    temperature: int | None = 41
    broken: bool = False  # name and memory queries fail
    mig: list[MigInstance] = field(default_factory=list)  # MIG mode on, these instances


@dataclass
class FakeNvml:
    """Follows `NvmlBackend`; records init/shutdown so tests see NVML released."""

    devices: list[FakeDevice] = field(default_factory=list)
    init_error: str | None = None
    count_error: str | None = None
    inits: int = 0
    shutdowns: int = 0
    live: bool = False

    def init(self) -> None:
        if self.init_error:
            raise NvmlUnavailable(self.init_error)
        self.inits += 1
        self.live = True

    def shutdown(self) -> None:
        self.shutdowns += 1
        self.live = False

    def device_count(self) -> int:
        self._check()
        if self.count_error:
            raise NvmlQueryError(self.count_error)
        return len(self.devices)

    def name(self, index: int) -> str:
        return self._device(index).name

    def memory(self, index: int) -> tuple[int, int, int]:
        d = self._device(index)
        return d.total, d.used, d.total - d.used

    def utilization(self, index: int) -> tuple[int, int]:
        d = self._device(index)
        if d.utilization is None:
            raise NvmlQueryError("nvmlDeviceGetUtilizationRates: Not Supported")
        return d.utilization

    def temperature(self, index: int) -> int:
        d = self._device(index)
        if d.temperature is None:
            raise NvmlQueryError("nvmlDeviceGetTemperature: Not Supported")
        return d.temperature

    def mig_instances(self, index: int) -> list[MigInstance]:
        return list(self._device(index).mig)

    def _check(self) -> None:
        if not self.live:
            raise NvmlQueryError("NVML is not initialised")

    def _device(self, index: int) -> FakeDevice:
        self._check()
        device = self.devices[index]
        if device.broken:
            raise NvmlQueryError("GPU is lost")
        return device
