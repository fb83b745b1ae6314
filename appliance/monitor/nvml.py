"""The NVML seam: what the appliance reads from NVIDIA GPUs, behind one small protocol.

`RealNvml` speaks to the driver through nvidia-ml-py (`pynvml`); tests hand `read_gpus` a fake that
follows `NvmlBackend`. A host without the driver (or without the library) is a normal case, not a
crash: every failure to reach NVML becomes `NvmlUnavailable` with the reason, so callers can fall
back to declared hardware and say why.

A GPU in MIG mode is not one device but its MIG instances, each with its own memory; CUDA gives a
process one instance, named by its `MIG-...` UUID in CUDA_VISIBLE_DEVICES. So `read_devices`
lists the instances in the GPU's place, each with that UUID as `cuda_id`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, Protocol

from appliance.errors import NvmlQueryError, NvmlUnavailable


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML sees it. Memory in bytes; optional readings are None when unsupported."""

    index: int
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    utilization_gpu: int | None = None  # percent of time a kernel ran
    utilization_memory: int | None = None  # percent of time memory was read or written
    temperature_c: int | None = None
    # What CUDA_VISIBLE_DEVICES names it by: the CUDA index, or a MIG instance's UUID.
    cuda_id: str = ""
    mig_parent: int | None = None  # the physical GPU of a MIG instance

    @property
    def cuda_name(self) -> str:
        return self.cuda_id or str(self.index)


@dataclass(frozen=True, slots=True)
class MigInstance:
    """One MIG instance of a GPU in MIG mode. Memory in bytes."""

    name: str
    uuid: str
    memory_total: int
    memory_used: int
    memory_free: int


class NvmlBackend(Protocol):
    """The NVML calls the appliance makes. Failures: `NvmlUnavailable` from `init`,
    `NvmlQueryError` from the per-device calls."""

    def init(self) -> None: ...

    def shutdown(self) -> None: ...

    def device_count(self) -> int: ...

    def name(self, index: int) -> str: ...

    def memory(self, index: int) -> tuple[int, int, int]:
        """(total, used, free) in bytes."""
        ...

    def utilization(self, index: int) -> tuple[int, int]:
        """(gpu, memory) in percent."""
        ...

    def temperature(self, index: int) -> int:
        """Core temperature in degrees Celsius."""
        ...

    def mig_instances(self, index: int) -> list[MigInstance]:
        """The MIG instances of a GPU whose current MIG mode is on; [] otherwise."""
        ...


class RealNvml:
    """`NvmlBackend` over nvidia-ml-py. The library is imported on `init`, not at import time."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: dict[int, Any] = {}

    def init(self) -> None:
        try:
            import pynvml
        except ImportError:
            raise NvmlUnavailable("the nvidia-ml-py package is not installed") from None
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise NvmlUnavailable(_reason(exc)) from None
        except OSError as exc:  # a broken library file surfaces as OSError from ctypes
            raise NvmlUnavailable(str(exc)) from None
        self._nvml = pynvml
        self._handles = {}

    def shutdown(self) -> None:
        nvml, self._nvml, self._handles = self._nvml, None, {}
        if nvml is None:
            return
        with suppress(nvml.NVMLError):  # nothing left to release that a caller could act on
            nvml.nvmlShutdown()

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount"))

    def name(self, index: int) -> str:
        name = self._call("nvmlDeviceGetName", self._handle(index))
        return name.decode() if isinstance(name, bytes) else str(name)

    def memory(self, index: int) -> tuple[int, int, int]:
        info = self._call("nvmlDeviceGetMemoryInfo", self._handle(index))
        return int(info.total), int(info.used), int(info.free)

    def utilization(self, index: int) -> tuple[int, int]:
        rates = self._call("nvmlDeviceGetUtilizationRates", self._handle(index))
        return int(rates.gpu), int(rates.memory)

    def temperature(self, index: int) -> int:
        nvml = self._require()
        return int(
            self._call("nvmlDeviceGetTemperature", self._handle(index), nvml.NVML_TEMPERATURE_GPU)
        )

    def mig_instances(self, index: int) -> list[MigInstance]:
        nvml = self._require()
        mig_mode = getattr(nvml, "nvmlDeviceGetMigMode", None)
        if mig_mode is None:  # a binding older than MIG
            return []
        handle = self._handle(index)
        try:
            current, _pending = mig_mode(handle)
        except nvml.NVMLError:
            return []  # not a MIG-capable GPU
        if current != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        found: list[MigInstance] = []
        for slot in range(int(self._call("nvmlDeviceGetMaxMigDeviceCount", handle))):
            try:
                mig = nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
            except nvml.NVMLError:
                continue  # an empty slot (NVML_ERROR_NOT_FOUND)
            name = self._call("nvmlDeviceGetName", mig)
            uuid = self._call("nvmlDeviceGetUUID", mig)
            info = self._call("nvmlDeviceGetMemoryInfo", mig)
            found.append(
                MigInstance(
                    name=name.decode() if isinstance(name, bytes) else str(name),
                    uuid=uuid.decode() if isinstance(uuid, bytes) else str(uuid),
                    memory_total=int(info.total),
                    memory_used=int(info.used),
                    memory_free=int(info.free),
                )
            )
        return found

    def _handle(self, index: int) -> Any:
        if index not in self._handles:
            self._handles[index] = self._call("nvmlDeviceGetHandleByIndex", index)
        return self._handles[index]

    def _require(self) -> Any:
        if self._nvml is None:
            raise NvmlQueryError("NVML is not initialised")
        return self._nvml

    def _call(self, function: str, *args: Any) -> Any:
        nvml = self._require()
        try:
            return getattr(nvml, function)(*args)
        except nvml.NVMLError as exc:
            raise NvmlQueryError(f"{function}: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


@contextmanager
def nvml_session(backend: NvmlBackend | None = None) -> Iterator[NvmlBackend]:
    """NVML initialised for the length of the block (pollers keep one open and call
    `read_devices` on each tick)."""
    nvml = backend if backend is not None else RealNvml()
    nvml.init()
    try:
        yield nvml
    finally:
        nvml.shutdown()


def read_devices(nvml: NvmlBackend) -> list[GpuInfo]:
    """Every GPU of an initialised backend. Name and memory are required; a GPU that cannot
    report them makes NVML unusable for placement, so that raises `NvmlUnavailable`."""
    try:
        count = nvml.device_count()
    except NvmlQueryError as exc:
        raise NvmlUnavailable(str(exc)) from None
    devices: list[GpuInfo] = []
    for physical in range(count):
        instances: list[MigInstance] = []
        with suppress(NvmlQueryError):  # a GPU that cannot say is used whole
            instances = nvml.mig_instances(physical)
        if not instances:
            devices.append(_device(nvml, physical, len(devices)))
            continue
        for mig in instances:
            devices.append(
                GpuInfo(
                    index=len(devices),
                    name=mig.name,
                    memory_total=mig.memory_total,
                    memory_used=mig.memory_used,
                    memory_free=mig.memory_free,
                    cuda_id=mig.uuid if mig.uuid.startswith("MIG-") else f"MIG-{mig.uuid}",
                    mig_parent=physical,
                )
            )
    return devices


def read_gpus(backend: NvmlBackend | None = None) -> list[GpuInfo]:
    """One reading of every GPU: initialise NVML, read, shut down."""
    with nvml_session(backend) as nvml:
        return read_devices(nvml)


def _device(nvml: NvmlBackend, index: int, position: int) -> GpuInfo:
    try:
        name = nvml.name(index)
        total, used, free = nvml.memory(index)
    except NvmlQueryError as exc:
        raise NvmlUnavailable(f"GPU {index}: {exc}") from None
    util_gpu = util_mem = temperature = None
    with suppress(NvmlQueryError):  # not supported on every GPU (MIG slices, some vGPUs)
        util_gpu, util_mem = nvml.utilization(index)
    with suppress(NvmlQueryError):
        temperature = nvml.temperature(index)
    return GpuInfo(
        index=position,
        name=name,
        memory_total=total,
        memory_used=used,
        memory_free=free,
        utilization_gpu=util_gpu,
        utilization_memory=util_mem,
        temperature_c=temperature,
        cuda_id="" if position == index else str(index),
    )
