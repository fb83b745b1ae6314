"""The response cache: bounded, expiring, keyed by digests."""

from __future__ import annotations

import logging

import pytest

from appliance.agents.cache import ResponseCache, cache_key


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_their_time_to_live() -> None:
    clock = Clock()
    cache = ResponseCache(ttl_s=10, size=4, clock=clock)
    cache.put("k", "reply", model="m")
    clock.now += 10
    hit = cache.get("k")
    assert hit is not None and (hit.value, hit.model) == ("reply", "m")
    clock.now += 0.5
    assert cache.get("k") is None
    assert len(cache) == 0
    assert cache.snapshot()["hits"] == 1 and cache.snapshot()["misses"] == 1


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = ResponseCache(ttl_s=60, size=2, clock=Clock())
    cache.put("a", 1, model=None)
    cache.put("b", 2, model=None)
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("c", 3, model=None)
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert len(cache) == 2


def test_keys_are_digests_that_depend_on_agent_and_input() -> None:
    key = cache_key("kai", [("user", "hello")], "I feel low")
    assert len(key) == 64 and "low" not in key
    assert key == cache_key("kai", [("user", "hello")], "I feel low")
    assert key != cache_key("guardrail", [("user", "hello")], "I feel low")
    assert key != cache_key("kai", [], "I feel low")
    assert cache_key("x", {"b": 1, "a": 2}) == cache_key("x", {"a": 2, "b": 1})


def test_a_hit_logs_a_digest_prefix_only(caplog: pytest.LogCaptureFixture) -> None:
    cache = ResponseCache(ttl_s=60, size=2)
    key = cache_key("kai", "private words")
    cache.put(key, "private reply", model=None)
    with caplog.at_level(logging.DEBUG, logger="appliance.agents.cache"):
        cache.get(key)
    assert key[:12] in caplog.text
    assert "private" not in caplog.text
