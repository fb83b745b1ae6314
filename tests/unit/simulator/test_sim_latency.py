"""The latency model's arithmetic, against values worked out by hand."""

from __future__ import annotations

import pytest

from appliance.simulator import latency
from appliance.simulator.latency import LatencyProfile

EIGHT_B = LatencyProfile(decode_tokens_per_s=50.0, prefill_tokens_per_s=8000.0, batch_slowdown=0.02)
SEVENTY_B = LatencyProfile(decode_tokens_per_s=17.5, prefill_tokens_per_s=1500.0)


def test_prompt_tokens_are_a_quarter_of_the_characters_plus_a_per_message_overhead():
    # ceil(11 / 4) + 4 = 7; an empty message still costs its 4 template tokens.
    assert latency.prompt_tokens([11, 0]) == 11
    assert latency.prompt_tokens([400]) == 104
    assert latency.prompt_tokens([]) == 0


def test_prefill_is_a_base_overhead_plus_prompt_over_the_prefill_rate():
    assert latency.prefill_s(EIGHT_B, 800) == pytest.approx(0.02 + 0.1)
    assert latency.prefill_s(SEVENTY_B, 1500) == pytest.approx(1.02)


def test_each_extra_running_sequence_slows_a_decode_step_by_the_batch_slowdown():
    assert latency.decode_step_s(EIGHT_B, 1) == pytest.approx(0.02)
    assert latency.decode_step_s(EIGHT_B, 11) == pytest.approx(0.02 * 1.2)
    assert latency.decode_step_s(EIGHT_B, 0) == pytest.approx(0.02)


def test_time_scale_multiplies_every_modelled_delay_and_zero_removes_them():
    half = LatencyProfile(decode_tokens_per_s=50.0, prefill_tokens_per_s=8000.0, time_scale=0.5)
    none = LatencyProfile(decode_tokens_per_s=50.0, prefill_tokens_per_s=8000.0, time_scale=0.0)
    assert latency.decode_step_s(half, 1) == pytest.approx(0.01)
    assert latency.prefill_s(half, 800) == pytest.approx(0.06)
    assert latency.decode_step_s(none, 64) == 0.0
    assert latency.prefill_s(none, 8000) == 0.0


def test_ttft_and_end_to_end_time_for_a_70b_request():
    # queue 0.5 s + (0.02 + 1500 / 1500) = 1.52 s to the first token; 175 more at 1/17.5 s = 10 s.
    assert latency.ttft_s(SEVENTY_B, 0.5, 1500) == pytest.approx(1.52)
    assert latency.e2e_s(SEVENTY_B, 0.5, 1500, 176, 1) == pytest.approx(11.52)


def test_completion_length_lies_between_60_and_100_percent_of_max_tokens():
    assert latency.completion_tokens(100, 100, draw=0) == 60
    assert latency.completion_tokens(100, 100, draw=40) == 100
    assert latency.completion_tokens(100, 100, draw=41) == 60  # 41 lengths: 60..100
    lengths = {latency.completion_tokens(256, 256, draw=d) for d in range(1000)}
    assert min(lengths) == 154 and max(lengths) == 256


def test_ignore_eos_or_min_tokens_at_max_give_exactly_the_limit():
    assert latency.completion_tokens(100, 100, exact=True, draw=0) == 100
    assert latency.completion_tokens(100, 100, min_tokens=100, draw=0) == 100
    assert latency.completion_tokens(100, 100, min_tokens=80, draw=0) == 80


def test_the_limit_is_max_tokens_capped_by_the_context_left():
    assert latency.completion_limit(256, 8000, 8192) == 192
    assert latency.completion_limit(256, 100, 8192) == 256
    assert latency.completion_tokens(100, 70, draw=40) == 70
    assert latency.completion_tokens(100, 70, exact=True) == 70


def test_reaching_the_limit_finishes_with_length():
    assert latency.finish_reason(100, 100) == "length"
    assert latency.finish_reason(60, 100) == "stop"


def test_kv_reservation_is_prompt_plus_limit_but_never_more_than_the_budget():
    assert latency.kv_reservation(100, 256, 1000) == 356
    assert latency.kv_reservation(900, 256, 1000) == 1000
    assert latency.default_kv_cache_tokens(8192, 16) == 65536


def test_tiny_steps_share_one_tick_up_to_the_cap():
    assert latency.tokens_per_tick(0.02, 0.01, 16) == 1
    assert latency.tokens_per_tick(0.001, 0.01, 16) == 10
    assert latency.tokens_per_tick(0.0001, 0.01, 16) == 16
    assert latency.tokens_per_tick(0.0, 0.01, 16) == 16


def test_size_class_defaults_follow_the_service_guide():
    assert latency.profile_for("8B").decode_tokens_per_s == 50.0
    assert latency.profile_for("14B").decode_tokens_per_s == 40.0
    assert latency.profile_for("32B").decode_tokens_per_s == 30.0
    assert latency.profile_for("70B").decode_tokens_per_s == 17.5
    assert latency.profile_for("70B").prefill_tokens_per_s == 1500.0
    explicit = latency.profile_for("70B", decode_tokens_per_s=20.0, time_scale=0.0)
    assert (explicit.decode_tokens_per_s, explicit.time_scale) == (20.0, 0.0)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("llama-3.1-8b-instruct", "8B"),
        ("meta-llama/Llama-3.1-70B-Instruct", "70B"),
        ("Qwen/Qwen2.5-14B-Instruct-AWQ", "14B"),
        ("qwen-2.5-32b-instruct", "32B"),
        ("qwen-2.5-72b-instruct", "70B"),
        ("mistral-7b-instruct", "8B"),
        ("mixtral-8x7b-instruct", "70B"),
        ("70B", "70B"),
        ("default", None),
    ],
)
def test_size_class_is_read_from_a_model_name(name, size):
    assert latency.size_class_of(name) == size
