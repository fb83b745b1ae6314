"""A background service that fails to start is said in the log; the appliance still gets READY."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.services import Services

SHIPPED = Path(__file__).resolve().parents[2] / "models.toml"


async def test_a_failing_background_start_is_logged_not_silent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    services = Services(load_config(SHIPPED, env={}), [])

    async def broken() -> None:
        raise OSError("cannot open the benchmark database")

    services.on_start.append(broken)
    with caplog.at_level(logging.ERROR, logger="appliance.services"):
        await services.start()
        await asyncio.wait_for(services.ready.wait(), timeout=10)
    await services.stop()
    assert "a background service did not start" in caplog.text
    assert "cannot open the benchmark database" in caplog.text
