"""Each engine's `/metrics`: running requests, waiting requests and KV-cache use, scraped periodically.

Only the three gauges the admission needs are read, so the parser looks at the lines that start with
their names and skips the rest (a vLLM exposition is mostly histogram buckets). Both the current
`vllm:kv_cache_usage_perc` and the pre-0.9 `vllm:gpu_cache_usage_perc` are accepted. Several series
of one gauge (vLLM's data-parallel engines) add up for the request counts; the KV-cache use is the
fullest one's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from appliance.errors import MetricsParseError
from appliance.gateway.client import EngineClient

log = logging.getLogger("appliance.monitor.engine_metrics")

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_WANTED = (RUNNING, WAITING, *KV_CACHE)


@dataclass(frozen=True, slots=True)
class EngineLoad:
    """One scrape of one engine. `scraped_at` is monotonic time; 0 = never scraped."""

    running: float | None = None
    waiting: float | None = None
    kv_usage: float | None = None
    scraped_at: float = 0.0
    error: str | None = None

    def fresh(self, now: float, max_age_s: float) -> bool:
        """A reading no older than `max_age_s` (a failed scrape keeps the last good one)."""
        return (
            self.running is not None and self.scraped_at > 0 and now - self.scraped_at <= max_age_s
        )

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "running": self.running,
            "waiting": self.waiting,
            "kv_cache_usage": self.kv_usage,
            "age_s": round(now - self.scraped_at, 2) if self.scraped_at else None,
            "error": self.error,
        }


NEVER = EngineLoad(error="not scraped yet")


def parse_load(text: str, *, scraped_at: float = 0.0) -> EngineLoad:
    """The three gauges from Prometheus text; `MetricsParseError` when the request counts are absent."""
    sums: dict[str, float] = {}
    kv: float | None = None
    for line in text.splitlines():
        if not line.startswith(_WANTED):
            continue
        parsed = _sample(line)
        if parsed is None:
            continue
        name, value = parsed
        if name in KV_CACHE:
            kv = value if kv is None else max(kv, value)
        elif name in (RUNNING, WAITING):
            sums[name] = sums.get(name, 0.0) + value
    if RUNNING not in sums and WAITING not in sums:
        raise MetricsParseError(f"no {RUNNING} or {WAITING} in the exposition")
    return EngineLoad(
        running=sums.get(RUNNING, 0.0),
        waiting=sums.get(WAITING, 0.0),
        kv_usage=kv,
        scraped_at=scraped_at,
    )


def _sample(line: str) -> tuple[str, float] | None:
    """`name{labels} value [timestamp]` -> (name, value); None for a line that is not a sample."""
    brace = line.find("{")
    space = line.find(" ")
    if brace != -1 and (space == -1 or brace < space):
        name = line[:brace]
        end = _labels_end(line, brace)
        if end == -1:
            return None
        rest = line[end + 1 :]
    else:
        if space == -1:
            return None
        name, rest = line[:space], line[space:]
    if name not in _WANTED:
        return None  # a longer name with a wanted prefix
    fields = rest.split()
    if not fields:
        return None
    try:
        value = float(fields[0])
    except ValueError:
        return None
    return (name, value) if math.isfinite(value) else None


def _labels_end(line: str, start: int) -> int:
    """Index of the `}` closing the label set opened at `start`, honouring quoted values."""
    quoted = escaped = False
    for i in range(start + 1, len(line)):
        char = line[i]
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = quoted
        elif char == '"':
            quoted = not quoted
        elif char == "}" and not quoted:
            return i
    return -1


class EngineMetricsScraper:
    """Scrapes every engine's `/metrics`; `scrape_all` is the monitor's periodic tick."""

    def __init__(
        self,
        clients: Mapping[str, EngineClient],
        *,
        timeout_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clients = clients
        self.timeout_s = timeout_s
        self._clock = clock
        self.loads: dict[str, EngineLoad] = dict.fromkeys(clients, NEVER)
        self._logged: set[str] = set()

    async def scrape(self, engine_id: str) -> EngineLoad:
        previous = self.loads.get(engine_id, NEVER)
        try:
            response = await self._clients[engine_id].get("/metrics", timeout=self.timeout_s)
            if response.status_code != 200:
                raise MetricsParseError(f"HTTP {response.status_code}")
            load = parse_load(response.text, scraped_at=self._clock())
        except Exception as exc:
            # Keep the last good reading (its age decides whether it still counts) plus the error.
            reason = str(exc) if isinstance(exc, MetricsParseError) else type(exc).__name__
            load = EngineLoad(
                previous.running, previous.waiting, previous.kv_usage, previous.scraped_at, reason
            )
            if engine_id not in self._logged:
                self._logged.add(engine_id)
                log.warning("engine %s: cannot read /metrics (%s)", engine_id, reason)
        else:
            self._logged.discard(engine_id)
        self.loads[engine_id] = load
        return load

    async def scrape_all(self) -> None:
        await asyncio.gather(*(self.scrape(engine) for engine in self._clients))
