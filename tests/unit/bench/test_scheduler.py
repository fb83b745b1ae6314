from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
from apscheduler.triggers.date import DateTrigger

from appliance.bench.scheduler import BenchScheduler, crontab_trigger, crontab_weekdays
from appliance.errors import ConfigError


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("*/2", "sun,tue,thu,sat"),
        ("5-7", "sun,fri,sat"),
        ("sat,SUN", "sun,sat"),
        ("1/3", "mon,thu"),
    ],
)
def test_crontab_weekdays_count_from_sunday(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def test_weekday_numbers_reach_apscheduler_as_names() -> None:
    trigger = crontab_trigger("30 2 * * 0")
    # 2024-06-01 was a Saturday: the next fire is Sunday 2 June, 02:30.
    start = datetime(2024, 6, 1, 12, 0).astimezone()
    fire = trigger.get_next_fire_time(None, start)
    assert fire is not None and (fire.day, fire.hour, fire.minute) == (2, 2, 30)


def _fires(expr: str, start: datetime, count: int) -> list[tuple[int, int]]:
    trigger = crontab_trigger(expr)
    out: list[tuple[int, int]] = []
    previous = None
    now = start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        assert fire is not None
        out.append((fire.month, fire.day))
        previous, now = fire, fire + timedelta(minutes=1)
    return out


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    # Cron's rule: the 1st of the month OR any Monday. June 2024: Mondays 3, 10, 17, 24; July 1st.
    start = datetime(2024, 6, 1, 0, 30).astimezone()
    assert _fires("0 3 1 * 1", start, 6) == [(6, 1), (6, 3), (6, 10), (6, 17), (6, 24), (7, 1)]


def test_a_star_day_field_keeps_the_other_one_alone() -> None:
    start = datetime(2024, 6, 1, 0, 30).astimezone()
    assert _fires("0 3 * * 1", start, 2) == [(6, 3), (6, 10)]
    assert _fires("0 3 15 * *", start, 2) == [(6, 15), (7, 15)]


@pytest.mark.parametrize("expr", ["0 3 * *", "61 3 * * *", "0 3 * * 9", "0 3 * * 5-1"])
def test_bad_crontab_expressions_are_config_errors_naming_the_key(expr: str) -> None:
    with pytest.raises(ConfigError, match=r"bench\.nightly_cron: expected a crontab"):
        crontab_trigger(expr, source="models.toml", key="bench.nightly_cron")


async def test_a_job_fires_once_and_reports_its_name() -> None:
    fired: list[str] = []
    done = asyncio.Event()

    async def fire(name: str) -> None:
        fired.append(name)
        done.set()

    scheduler = BenchScheduler(fire)
    scheduler.add(
        "probe", DateTrigger(run_date=datetime.now().astimezone() + timedelta(seconds=0.2))
    )
    scheduler.start()
    try:
        assert "probe" in scheduler.next_runs()
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        scheduler.stop()
    assert fired == ["probe"]
