"""Fault knobs: seeded rates, one-shot counters, crash-after, run-time changes."""

from __future__ import annotations

import msgspec
import pytest

from appliance.simulator.faults import NO_FAULT, Faults
from appliance.simulator.protocol import FaultPatch


def test_no_knobs_means_no_faults_and_no_draws_from_the_rng():
    faults = Faults(seed=1)
    state = faults.rng.getstate()
    assert all(faults.draw() == NO_FAULT for _ in range(100))
    assert faults.rng.getstate() == state


def test_one_shot_counters_fault_exactly_the_next_n_requests():
    faults = Faults()
    faults.update(FaultPatch(error_next=2, malformed_next=1))
    draws = [faults.draw() for _ in range(4)]
    assert [d.error for d in draws] == [True, True, False, False]
    assert [d.malformed for d in draws] == [True, False, False, False]
    assert not any(d.stall for d in draws)


def test_rates_are_seeded_and_roughly_respected():
    a, b, c = (Faults(seed=seed, error_rate=0.3) for seed in (7, 7, 8))
    run_a = [a.draw().error for _ in range(2000)]
    run_b = [b.draw().error for _ in range(2000)]
    run_c = [c.draw().error for _ in range(2000)]
    assert run_a == run_b != run_c
    assert 0.25 < sum(run_a) / len(run_a) < 0.35


def test_crash_after_counts_arrivals_and_restarts_counting_when_set_at_run_time():
    faults = Faults(crash_after=3)
    assert [faults.arrive() for _ in range(3)] == [False, False, True]
    faults.update(FaultPatch(crash_after=2))
    assert [faults.arrive() for _ in range(2)] == [False, True]
    faults.update(FaultPatch(crash_after=None))
    assert not any(faults.arrive() for _ in range(10))


def test_snapshot_shows_what_was_changed():
    faults = Faults(stall_s=30.0)
    faults.update(msgspec.json.decode(b'{"stall_s": 2.5, "stall_next": 1}', type=FaultPatch))
    snap = faults.snapshot()
    assert snap["stall_s"] == 2.5 and snap["stall_next"] == 1 and snap["error_rate"] == 0.0


def test_a_patch_refuses_unknown_fields_and_bad_values():
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"eror_rate": 1}', type=FaultPatch)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"error_rate": 2}', type=FaultPatch)
