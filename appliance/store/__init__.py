"""SQLite storage (aiosqlite): one database file under the data directory, versioned migrations."""

from appliance.store.bench import BenchStore, RunRow, SummaryRow
from appliance.store.db import StoreError, open_db

__all__ = ["BenchStore", "RunRow", "StoreError", "SummaryRow", "open_db"]
