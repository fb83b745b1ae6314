"""SQLite storage (aiosqlite): one database file under the data directory, versioned migrations."""

from appliance.errors import StoreError
from appliance.store.bench import BenchStore
from appliance.store.bench_rows import RunRow, SummaryRow
from appliance.store.db import open_db

__all__ = ["BenchStore", "RunRow", "StoreError", "SummaryRow", "open_db"]
