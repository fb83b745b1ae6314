"""Opening the database: pragmas, ordered migrations on new and existing files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from appliance.errors import StoreError
from appliance.store.bench import BenchStore
from appliance.store.db import open_db, schema_version
from appliance.store.migrations import LATEST, MIGRATIONS


async def test_empty_database_gets_every_migration_wal_and_foreign_keys(tmp_path: Path) -> None:
    conn = await open_db(tmp_path / "sub" / "bench.sqlite3")
    try:
        assert await schema_version(conn) == LATEST
        async with conn.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"
        async with conn.execute("PRAGMA foreign_keys") as cur:
            assert (await cur.fetchone())[0] == 1
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cur:
            tables = {r[0] for r in await cur.fetchall()}
        assert {"runs", "phases", "summaries", "samples"} <= tables
    finally:
        await conn.close()


async def test_existing_database_is_upgraded_in_order_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = await open_db(path, MIGRATIONS[:1])
    await old.execute(
        "INSERT INTO runs (kind, trigger, status, started_at) "
        "VALUES ('run', 'manual', 'completed', '2024-01-01T00:00:00Z')"
    )
    await old.execute(
        "INSERT INTO samples (run_id, seq, phase, agent, model, start_s, ttft_s, e2el_s, itl_s, "
        "prompt_tokens, completion_tokens, ok) VALUES (1, 0, 0, 'kai', 'm', 0, 0.1, 1, '[]', 5, 6, 1)"
    )
    assert await schema_version(old) == 1
    await old.close()

    store = await BenchStore.open(path)
    try:
        conn = store._conn
        assert await schema_version(conn) == LATEST
        async with conn.execute("SELECT count(*) FROM runs") as cur:
            assert (await cur.fetchone())[0] == 1
        async with conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'") as cur:
            assert "summaries_comparable" in {r[0] for r in await cur.fetchall()}
        (kept,) = await store.samples(1)  # read through the new columns
        assert (kept.completion_tokens, kept.fallback) == (6, False)
    finally:
        await store.close()


async def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    path = tmp_path / "bad.sqlite3"
    broken = (*MIGRATIONS, "CREATE TABLE extra (x INTEGER); CREATE TABLE extra (y INTEGER)")
    with pytest.raises(sqlite3.OperationalError):
        await open_db(path, broken)
    conn = await open_db(path)
    try:
        assert await schema_version(conn) == LATEST
        async with conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'") as cur:
            assert await cur.fetchone() is None
    finally:
        await conn.close()


async def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute(f"PRAGMA user_version = {LATEST + 5}")
    with pytest.raises(StoreError, match="newer than this appliance knows"):
        await open_db(path)


async def test_an_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot open database"):
        await open_db(blocker / "bench.sqlite3")
