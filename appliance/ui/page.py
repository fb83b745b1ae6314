"""The operations page's parts: the per-minute history, the benchmark digest, their sampler and the
overview document, built once by the composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from appliance.bench.service import BenchService
from appliance.monitor.periodic import Periodic
from appliance.ui.bench_digest import BenchDigest
from appliance.ui.history import CountSource, History
from appliance.ui.overview import Overview

if TYPE_CHECKING:
    from appliance.core import Appliance


class OpsPage:
    def __init__(self, appliance: Appliance, bench: BenchService | None) -> None:
        config, load = appliance.config, appliance.load
        gates = load.admission
        counts = CountSource(
            config, load.recorder, lambda: list(gates.gates.values()) if gates is not None else []
        )
        self.history = History(load.latency, counts, interval_s=config.server.history_interval_s)
        self.digest = BenchDigest(bench)
        # Samples the history and refreshes the digest; a background part of the appliance.
        self.sampler = Periodic("ops-history", self.history.interval_s, self._tick)
        self.overview = Overview(appliance, self.history, self.digest)

    async def _tick(self) -> None:
        self.history.sample()
        await self.digest.refresh()
