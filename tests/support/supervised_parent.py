"""A minimal appliance: runs a Supervisor with one real engine and waits to be killed.

Usage: supervised_parent.py asyncio|uvloop PORT ENGINE_ARGV...
Prints `running PID` once the engine is RUNNING.
"""

from __future__ import annotations

import asyncio
import sys

from appliance.engines.base import LaunchSpec
from appliance.engines.health import HttpHealthProbe
from appliance.engines.process import SubprocessSpawner
from appliance.engines.supervisor import RestartPolicy, Supervisor


async def main(port: int, argv: list[str]) -> None:
    spec = LaunchSpec(
        engine_id="child",
        argv=tuple(argv),
        env={},
        health_url=f"http://127.0.0.1:{port}/health",
        startup_timeout_s=60.0,
    )
    sup = Supervisor(
        [spec],
        spawner=SubprocessSpawner(),
        probe=HttpHealthProbe(),
        policy=RestartPolicy(start_poll_s=0.05),
    )
    await sup.start()
    print(f"running {sup.status()['child'].pid}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    loop, port, *engine = sys.argv[1:]
    if loop == "uvloop":
        import uvloop

        uvloop.run(main(int(port), engine))
    else:
        asyncio.run(main(int(port), engine))
