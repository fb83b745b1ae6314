"""Open the appliance's SQLite database: WAL, foreign keys, and the schema brought up to date."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from appliance.errors import StoreError
from appliance.store.migrations import MIGRATIONS


async def open_db(
    path: str | os.PathLike[str], migrations: Sequence[str] = MIGRATIONS
) -> aiosqlite.Connection:
    """Connect in autocommit mode (transactions are explicit) and apply pending migrations."""
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(file, isolation_level=None)
    except (OSError, aiosqlite.Error) as exc:
        raise StoreError(f"cannot open database {file}: {exc}") from None
    try:
        # A second process (the CLI beside the service) may hold the write lock for a moment.
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await migrate(conn, migrations)
    except BaseException:
        await conn.close()
        raise
    return conn


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: Sequence[str] = MIGRATIONS) -> int:
    """Apply migrations past the database's version in order; returns the version reached."""
    current = await schema_version(conn)
    if current > len(migrations):
        raise StoreError(
            f"database schema version {current} is newer than this appliance knows "
            f"({len(migrations)}); upgrade the appliance or use another --db file"
        )
    for version in range(current + 1, len(migrations) + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(migrations[version - 1]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version:d}")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    return len(migrations)


def _statements(script: str) -> list[str]:
    """Split a migration into statements (ours hold no semicolons inside literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]
