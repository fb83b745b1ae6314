"""When scheduled benchmarks fire: APScheduler 3 on the appliance's event loop.

Cron expressions are read the crontab way (Sunday = 0); APScheduler 3 numbers weekdays from
Monday, so numeric weekdays are translated to names before they reach it. Each job has
`max_instances=1` and `coalesce=True`: a run that is still going when its next time comes is not
doubled, and missed times (the appliance was down) collapse into one.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

from appliance.errors import ConfigError

log = logging.getLogger("appliance.bench.scheduler")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_weekdays(field: str) -> str:
    """A crontab weekday field (0 or 7 = Sunday, names allowed) as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        every = int(step) if step else 1
        if every < 1:
            raise ValueError(f"bad weekday step in {field!r}")
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (_day(x) for x in span.split("-", 1))
        else:
            low = _day(span)
            high = 6 if step else low
        if low > high:
            raise ValueError(f"bad weekday range in {field!r}")
        days.update(d % 7 for d in range(low, high + 1, every))
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    if token[:3] in _DAYS:
        return _DAYS.index(token[:3])
    raise ValueError(f"bad weekday {token!r}")


def crontab_trigger(expr: str, *, source: str = "models.toml", key: str = "bench") -> BaseTrigger:
    """A trigger from a 5-field crontab expression, or a `ConfigError` naming the key.

    Cron fires when day-of-month OR day-of-week matches if both are restricted (neither starts
    with `*`); APScheduler's `from_crontab` ANDs them, so that case becomes two triggers ORed.
    """
    fields = expr.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"{len(fields)} fields")
        minute, hour, day, month, raw_weekday = fields
        weekday = crontab_weekdays(raw_weekday)
        if day.startswith("*") or raw_weekday.startswith("*"):
            return CronTrigger.from_crontab(" ".join((minute, hour, day, month, weekday)))
        return OrTrigger(
            [
                CronTrigger.from_crontab(" ".join((minute, hour, day, month, "*"))),
                CronTrigger.from_crontab(" ".join((minute, hour, "*", month, weekday))),
            ]
        )
    except ValueError as exc:
        raise ConfigError(
            source,
            key,
            "a crontab expression: minute hour day month weekday",
            got=f"{expr!r} ({exc})",
        ) from None


class BenchScheduler:
    """Named jobs that call `fire(name)`; one at a time per name."""

    def __init__(self, fire: Callable[[str], Awaitable[None]]) -> None:
        self._fire = fire
        self._scheduler = AsyncIOScheduler()

    def add(self, name: str, trigger: BaseTrigger) -> None:
        self._scheduler.add_job(
            self._fire,
            trigger,
            args=[name],
            id=name,
            name=f"benchmark {name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=600,
            replace_existing=True,
        )

    def start(self) -> None:
        """Must be called with the event loop running."""
        self._scheduler.start()
        for name, when in self.next_runs().items():
            log.info("benchmark %s scheduled, next at %s", name, when)

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}
