"""The profiles shipped in models.toml, planned for the 2x A100 40GB the service guide names.

The three runnable profiles must fit with every engine's KV cache holding max_num_seqs
full-length sequences; the guide's originals must not, and must say why and what would.
"""

from __future__ import annotations

import pytest

from appliance.config import load_config
from appliance.errors import PlacementError
from appliance.placement import check_plan, plan_engines, plan_profile
from appliance.placement.gpus import GIB, parse_gpu_spec
from tests.unit.placement.conftest import MODELS_TOML

SHIPPED = {
    # profile: {engine: (GPUs, fraction, full-length sequences, max_model_len)}
    "budget": {"llama-70b": ((0, 1), 0.94, 10, 8192)},
    "balanced": {
        "llama-70b": ((0, 1), 0.69, 3, 8192),
        "llama-8b": ((0, 1), 0.26, 6, 4096),
    },
    "performance": {
        "qwen-32b": ((0,), 0.92, 6, 8192),
        "llama-8b": ((1,), 0.42, 10, 4096),
        "qwen-14b": ((1,), 0.52, 5, 8192),
    },
}
GUIDE = ("guide-budget", "guide-balanced", "guide-performance")
A100S = parse_gpu_spec("2xA100-40GB")


def planned(raw, name):
    profile = raw.profiles[name]
    return plan_profile(name, profile.engines, raw.catalog, gpus="2xA100-40GB")


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_profile_fits_two_a100_40gb_with_full_length_sequences(raw, name):
    profile = raw.profiles[name]
    assert profile.gpus == "2xA100-40GB" and not profile.example_only
    plan = planned(raw, name)
    assert plan.feasible, plan.problems
    for engine in plan.engines:
        gpus, fraction, seqs, length = SHIPPED[name][engine.engine_id]
        assert engine.verdict == "fits"
        assert engine.gpus == gpus
        assert engine.gpu_memory_utilization == fraction
        assert engine.max_model_len == length
        assert engine.full_length_seqs >= engine.max_num_seqs == seqs
        # The KV cache holds every one of its max_num_seqs full-length sequences at once, with
        # at least 10% to spare.
        needed = engine.kv_bytes_per_token_per_gpu * engine.max_model_len * engine.max_num_seqs
        assert engine.kv_cache_bytes_per_gpu >= 1.1 * needed, engine.engine_id
    assert {e.engine_id for e in plan.engines} == set(SHIPPED[name])
    for use in plan.gpu_use:
        assert use.used_fraction <= 0.95


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_profiles_load_and_pass_check_plan(name):
    config = load_config(MODELS_TOML, profile=name, env={})
    plan = check_plan(config, gpus="2xA100-40GB")
    assert plan.feasible and plan.gpu_source == "what-if"


@pytest.mark.parametrize("name", GUIDE)
def test_the_guides_originals_are_kept_as_examples_that_do_not_fit(raw, name):
    profile = raw.profiles[name]
    assert profile.example_only and profile.gpus == "2xA100-40GB"
    plan = planned(raw, name)
    assert not plan.feasible
    big = plan.engine("llama-70b")
    assert big is not None and big.weight_format == "16-bit"
    # 141 GB of 16-bit weights: 65.8 GiB per GPU even split two ways, on 40 GiB cards.
    assert big.weight_bytes_per_gpu / GIB == pytest.approx(65.8, abs=0.1)
    assert any("exceed even a whole A100-40GB" in p for p in big.problems)


@pytest.mark.parametrize("name", GUIDE)
def test_every_suggestion_for_a_guide_original_fits_when_planned_again(raw, name):
    plan = planned(raw, name)
    assert plan.suggestions
    for suggestion in plan.suggestions:
        assert suggestion.fits and suggestion.changes
        again = plan_engines(suggestion.engines, A100S, raw.catalog, hypothetical=True)
        assert again.feasible


def test_the_guide_budget_fix_is_the_awq_70b(raw):
    (first, *_) = planned(raw, "guide-budget").suggestions
    assert first.changes == (
        "llama-70b: quantize to AWQ 4-bit (an AWQ checkpoint of llama-3.1-70b-instruct, "
        'quantization = "awq")',
    )


def test_the_guide_balanced_fixes_include_keeping_the_70b(raw):
    # With TP=2's 3.6 GiB runtime the 70B in AWQ no longer shares two A100 40GB with two
    # more engines: the fixes either keep the 70B alone or keep the others without it.
    suggestions = planned(raw, "guide-balanced").suggestions
    assert suggestions
    assert any(
        any(c.startswith("llama-70b: quantize to AWQ") for c in fix.changes)
        and any(c.startswith("drop qwen-32b") for c in fix.changes)
        for fix in suggestions
    )


def test_an_example_only_profile_is_refused_by_check_plan_with_the_explanation(raw):
    config = load_config(MODELS_TOML, profile="budget", env={})
    guide = raw.profiles["guide-budget"]
    import msgspec

    as_guide = msgspec.structs.replace(config, profile="guide-budget", engines=guide.engines)
    with pytest.raises(PlacementError) as caught:
        check_plan(as_guide, gpus="2xA100-40GB")
    text = caught.value.message
    assert "Profile 'guide-budget' does not fit 2x A100-40GB" in text
    assert "65.8 GiB of weights" in text
    assert "quantize to AWQ 4-bit" in text
