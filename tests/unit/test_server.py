"""The served process settles its heap once the app is built: long-lived objects frozen out of
the cycle collector's walks, and the collector run rarely."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from appliance.server import GC_THRESHOLD, settle_heap


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_settling_freezes_what_exists_and_raises_the_threshold() -> None:
    long_lived = [{"n": i} for i in range(100)]
    settle_heap()
    assert gc.get_freeze_count() >= len(long_lived)
    assert gc.get_threshold() == GC_THRESHOLD
    # Cycles made afterwards are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
