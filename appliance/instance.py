"""One appliance per data directory.

The data directory holds the benchmark store and the records of the engine process groups; a
second `appliance serve` over the same directory would take the running one's engines for
leftovers of a crash and end them. So `serve` holds an exclusive lock on `<data_dir>/serve.lock`
for its whole life (the kernel lets go when the process ends, however it ends) and refuses to
start, with one line and exit 2, while another appliance holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from appliance.config.schema import Config
from appliance.errors import ConfigError

LOCK_FILE = "serve.lock"


def hold_data_dir(config: Config) -> IO[str]:
    """The open, locked file; keep it open (and referenced) while serving."""
    path = Path(config.server.data_dir) / LOCK_FILE
    handle = path.open("a+", encoding="ascii")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise ConfigError(
            config.source,
            "server.data_dir",
            "a data directory no other running appliance serves from",
            got=f"{config.server.data_dir} (held by the appliance with pid {holder})",
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
