"""Every check `serve` makes before it starts anything, so `config validate` can make them too.

A configuration that `validate` passes must not be refused by `serve`: both call `preflight`, and
every failure is a `ConfigError` (one line, exit 2). Only `serve` creates the data directory.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from appliance.config.schema import Config
from appliance.errors import ConfigError, PlacementError


def preflight(config: Config, *, host: str | None = None, create: bool = False) -> None:
    """Exposure, data directory, GPU placement, crisis resources, benchmark schedule and store."""
    if host is not None:
        from appliance.server import check_exposure

        check_exposure(config, host)
    data_dir(config, create=create)
    _placement(config)
    _resources(config)
    _schedule(config)
    _bench_store(config)


def data_dir(config: Config, *, create: bool = False) -> Path:
    """`[server].data_dir` as a writable directory (made when `create`), or a `ConfigError`."""
    path = Path(config.server.data_dir)
    key = "server.data_dir"
    if path.exists() and not path.is_dir():
        raise ConfigError(config.source, key, "a directory", got=f"{path} (a file)")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(config.source, key, "a directory", got=f"{path} (under a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(config.source, key, "a writable directory", got=str(existing))
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                config.source, key, "a directory that can be made", got=str(exc)
            ) from None
    return path


def _placement(config: Config) -> None:
    if not any(engine.kind == "vllm" for engine in config.engines):
        return
    from appliance.placement import check_plan

    try:
        check_plan(config)
    except PlacementError as exc:
        lines = [line.strip() for line in exc.message.splitlines() if line.strip()]
        summary = "; ".join(lines[:2])[:300]
        raise ConfigError(
            config.source,
            f"profiles.{config.profile}",
            f"engines that fit the GPUs (see `appliance plan --profile {config.profile}`)",
            got=summary,
        ) from None


def _resources(config: Config) -> None:
    from appliance.agents.resources import Resources

    Resources(config.safety, source=config.source)


def _bench_store(config: Config) -> None:
    """An existing benchmark database must be one this appliance can open (read only here)."""
    if not config.bench.enabled:
        return
    from appliance.bench.service import db_path
    from appliance.store.migrations import MIGRATIONS

    path = db_path(config)
    if not path.exists():
        return
    key = "bench.db_file"
    if not path.is_file():
        raise ConfigError(config.source, key, "an SQLite file", got=f"{path} (not a file)")
    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as exc:
        raise ConfigError(config.source, key, "an SQLite database", got=f"{path}: {exc}") from None
    if version > len(MIGRATIONS):
        raise ConfigError(
            config.source,
            key,
            f"a database of schema version {len(MIGRATIONS)} or older",
            got=f"{path} at version {version} (written by a newer appliance)",
        )


def _schedule(config: Config) -> None:
    if not config.bench.enabled:
        return
    from appliance.bench.scheduler import crontab_trigger

    crontab_trigger(config.bench.nightly_cron, source=config.source, key="bench.nightly_cron")
    crontab_trigger(config.bench.probe_cron, source=config.source, key="bench.probe_cron")
