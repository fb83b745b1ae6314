"""The schema as an ordered list of migrations; `PRAGMA user_version` is the applied count.

Append new migrations; never edit one that has shipped. Each runs in its own transaction together
with the version bump, so a database is always at exactly one version.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: benchmark runs, their phases, per-scope summaries and per-request samples.
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        trigger TEXT NOT NULL,
        status TEXT NOT NULL
            CHECK (status IN ('running', 'completed', 'interrupted', 'failed', 'skipped')),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        profile TEXT NOT NULL DEFAULT '',
        gpu TEXT NOT NULL DEFAULT '',
        version TEXT NOT NULL DEFAULT '',
        config_source TEXT NOT NULL DEFAULT '',
        params TEXT NOT NULL DEFAULT '{}',
        result TEXT,
        reason TEXT,
        owner_host TEXT,
        owner_pid INTEGER,
        owner_started REAL
    );
    CREATE TABLE phases (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        scope TEXT NOT NULL,
        mode TEXT NOT NULL,
        concurrency INTEGER,
        rate REAL,
        num_requests INTEGER NOT NULL,
        started_s REAL NOT NULL,
        duration_s REAL,
        PRIMARY KEY (run_id, idx)
    ) WITHOUT ROWID;
    CREATE TABLE summaries (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        phase INTEGER NOT NULL,
        scope TEXT NOT NULL,
        agent TEXT,
        model TEXT NOT NULL,
        mode TEXT NOT NULL,
        concurrency INTEGER,
        rate REAL,
        completed INTEGER NOT NULL,
        failed INTEGER NOT NULL,
        p95_e2el_ms REAL NOT NULL,
        tokens_per_s REAL NOT NULL,
        error_rate REAL NOT NULL,
        metrics TEXT NOT NULL
    );
    CREATE TABLE samples (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        phase INTEGER NOT NULL,
        agent TEXT NOT NULL,
        model TEXT NOT NULL,
        start_s REAL NOT NULL,
        ttft_s REAL NOT NULL,
        e2el_s REAL NOT NULL,
        itl_s TEXT NOT NULL,
        prompt_tokens INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT,
        PRIMARY KEY (run_id, seq)
    ) WITHOUT ROWID;
    """,
    # 2: the lookups the history, trend and regression views make.
    """
    CREATE INDEX runs_status ON runs(status);
    CREATE INDEX runs_kind_started ON runs(kind, started_at);
    CREATE INDEX summaries_run ON summaries(run_id, phase);
    CREATE INDEX summaries_comparable ON summaries(scope, agent, model, mode, concurrency, rate);
    """,
    # 3: which answers came from a fallback model (the appliance says so in a response header).
    """
    ALTER TABLE samples ADD COLUMN fallback INTEGER NOT NULL DEFAULT 0;
    """,
)

LATEST = len(MIGRATIONS)
