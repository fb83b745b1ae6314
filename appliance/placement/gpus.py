"""The GPUs a plan is made for: read from NVML, or declared as `2xA100-40GB` for what-if planning.

A declared card's memory is what `nvidia-smi` reports for that card where the appliance knows it
(an "A100-40GB" has 40960 MiB, an "L40S-48GB" only 46068 MiB); for other names the figure is taken
as decimal gigabytes, which errs on the small side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from msgspec import Struct

from appliance.errors import GpuSpecError
from appliance.monitor.nvml import GpuInfo

MIB = 1 << 20
GIB = 1 << 30

# (name, marketed GB) -> total MiB as NVML reports it.
KNOWN_CARDS: dict[tuple[str, int], int] = {
    ("A100", 40): 40960,
    ("A100", 80): 81920,
    ("H100", 80): 81559,
    ("H100", 94): 95830,
    ("H200", 141): 143771,
    ("L40S", 48): 46068,
    ("L40", 48): 46068,
    ("A10", 24): 23028,
    ("A10G", 24): 23028,
    ("L4", 24): 23034,
    ("A6000", 48): 49140,
    ("RTX-A6000", 48): 49140,
    ("RTX-4090", 24): 24564,
}
MAX_DECLARED = 64

_GROUP = re.compile(
    r"^(?P<count>\d+)\s*x\s*(?P<name>[a-z0-9][a-z0-9._-]*?)-(?P<mem>\d+(?:\.\d+)?)\s*(?:gb|gib|g)$",
    re.IGNORECASE,
)
SPEC_HELP = "NxNAME-MEMGB, e.g. 2xA100-40GB or 1xH100-80GB (join kinds with '+')"


class Gpu(Struct, frozen=True, kw_only=True):
    """One GPU as the planner sees it. `free` is below `total` when other processes hold memory."""

    index: int
    name: str
    total: int  # bytes
    free: int  # bytes
    source: str  # "nvml" or "declared"
    cuda_id: str = ""  # CUDA_VISIBLE_DEVICES' name for it when not `index` (a MIG UUID)
    mig: bool = False  # a MIG instance: CUDA gives a process only one

    @property
    def cuda_name(self) -> str:
        return self.cuda_id or str(self.index)


def parse_gpu_spec(spec: str) -> list[Gpu]:
    """`2xA100-40GB`, `1xA100-80GB+1xA100-40GB` -> GPUs numbered from 0 in the order written."""
    text = spec.strip()
    if not text or text.lower() == "none":
        return []
    gpus: list[Gpu] = []
    for part in re.split(r"\s*\+\s*", text):
        match = _GROUP.match(part.strip())
        if match is None:
            raise GpuSpecError(SPEC_HELP, spec)
        count = int(match["count"])
        if not 1 <= count <= MAX_DECLARED:
            raise GpuSpecError(f"1 to {MAX_DECLARED} GPUs of a kind", spec)
        name = match["name"].upper()
        marketed = float(match["mem"])
        if marketed <= 0:
            raise GpuSpecError("a positive memory size", spec)
        total = _declared_bytes(name, marketed)
        label = f"{name}-{match['mem']}GB"
        for _ in range(count):
            gpus.append(
                Gpu(index=len(gpus), name=label, total=total, free=total, source="declared")
            )
    if len(gpus) > MAX_DECLARED:
        raise GpuSpecError(f"at most {MAX_DECLARED} GPUs", spec)
    return gpus


def _declared_bytes(name: str, marketed: float) -> int:
    known = KNOWN_CARDS.get((name, round(marketed))) if marketed.is_integer() else None
    return known * MIB if known else int(marketed * 1e9)


def from_nvml(infos: Iterable[GpuInfo]) -> list[Gpu]:
    return [
        Gpu(
            index=i.index,
            name=i.name,
            total=i.memory_total,
            free=i.memory_free,
            source="nvml",
            cuda_id=i.cuda_id,
            mig=i.mig_parent is not None,
        )
        for i in infos
    ]


def describe(gpus: list[Gpu]) -> str:
    """`2x A100-40GB` or `1x H100-80GB + 1x A100-40GB` (names as NVML or the spec gave them)."""
    groups: list[tuple[str, int]] = []
    for gpu in gpus:
        if groups and groups[-1][0] == gpu.name:
            groups[-1] = (gpu.name, groups[-1][1] + 1)
        else:
            groups.append((gpu.name, 1))
    return " + ".join(f"{n}x {name}" for name, n in groups) or "no GPUs"
