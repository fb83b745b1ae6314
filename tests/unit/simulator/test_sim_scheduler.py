"""Sequence slots, the FIFO queue and the KV-cache budget."""

from __future__ import annotations

import asyncio

import pytest

from appliance.simulator.scheduler import Scheduler


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_max_num_seqs_run_and_the_rest_wait_in_order():
    scheduler = Scheduler(max_num_seqs=2, kv_cache_tokens=10_000)
    assert scheduler.try_admit(10) and scheduler.try_admit(10)
    order: list[str] = []

    async def wait(name: str) -> None:
        await scheduler.admit(10)
        order.append(name)

    third = asyncio.create_task(wait("third"))
    fourth = asyncio.create_task(wait("fourth"))
    await _settle()
    assert (scheduler.running, scheduler.waiting) == (2, 2)
    scheduler.release(10)
    await third
    assert order == ["third"] and scheduler.waiting == 1
    scheduler.release(10)
    await fourth
    assert order == ["third", "fourth"]
    assert (scheduler.running, scheduler.waiting) == (2, 0)


async def test_a_request_waits_while_the_kv_budget_is_short_even_with_free_slots():
    scheduler = Scheduler(max_num_seqs=8, kv_cache_tokens=1000)
    assert scheduler.try_admit(600)
    assert scheduler.kv_usage == pytest.approx(0.6)
    assert not scheduler.try_admit(600)
    waiter = asyncio.create_task(scheduler.admit(600))
    await _settle()
    assert scheduler.waiting == 1 and not waiter.done()
    scheduler.release(600)
    await waiter
    assert scheduler.running == 1 and scheduler.kv_usage == pytest.approx(0.6)


async def test_the_head_of_the_queue_blocks_smaller_requests_behind_it():
    scheduler = Scheduler(max_num_seqs=8, kv_cache_tokens=1000)
    scheduler.try_admit(600)
    big = asyncio.create_task(scheduler.admit(900))
    await _settle()
    assert not scheduler.try_admit(100)  # fits, but someone is ahead in line
    small = asyncio.create_task(scheduler.admit(100))
    await _settle()
    assert scheduler.waiting == 2
    scheduler.release(600)
    await asyncio.gather(big, small)
    assert scheduler.reserved == 1000


async def test_one_request_may_run_alone_whatever_its_size():
    scheduler = Scheduler(max_num_seqs=4, kv_cache_tokens=100)
    assert scheduler.try_admit(100)
    scheduler.release(100)
    assert scheduler.try_admit(5000)
    assert scheduler.kv_usage == 1.0


async def test_a_cancelled_waiter_leaves_the_line_and_wakes_the_next():
    scheduler = Scheduler(max_num_seqs=1, kv_cache_tokens=1000)
    scheduler.try_admit(10)
    first = asyncio.create_task(scheduler.admit(10))
    second = asyncio.create_task(scheduler.admit(10))
    await _settle()
    first.cancel()
    await _settle()
    assert scheduler.waiting == 1
    scheduler.release(10)
    await second
    assert (scheduler.running, scheduler.reserved, scheduler.waiting) == (1, 10, 0)


async def test_a_waiter_cancelled_after_its_grant_gives_its_slot_back():
    scheduler = Scheduler(max_num_seqs=1, kv_cache_tokens=1000)
    scheduler.try_admit(10)
    waiter = asyncio.create_task(scheduler.admit(10))
    await _settle()
    scheduler.release(10)  # grants the waiter, which has not run yet
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert (scheduler.running, scheduler.reserved) == (0, 0)
