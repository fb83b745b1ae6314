"""Suggestions: concrete changes, each proven by planning again, cheapest sacrifice first."""

from __future__ import annotations

from appliance.config.schema import CatalogEntry
from appliance.placement.gpus import parse_gpu_spec
from appliance.placement.planner import plan_engines
from appliance.placement.suggest import suggest
from tests.unit.placement.helpers import vllm_engine

LLAMA_70B = "llama-3.1-70b-instruct"
LLAMA_8B = "llama-3.1-8b-instruct"


def fixes(engines, spec, catalog):
    gpus = parse_gpu_spec(spec)
    found = suggest(engines, gpus, catalog)
    for fix in found:
        if fix.fits:
            assert plan_engines(fix.engines, gpus, catalog, hypothetical=True).feasible
    return found


def test_fp8_is_offered_before_awq_for_a_70b_that_just_misses_one_h200(catalog):
    found = fixes([vllm_engine("big", LLAMA_70B)], "1xH200-141GB", catalog)
    texts = [fix.changes for fix in found]
    assert texts[0] == (
        'big: quantize to FP8 (quantization = "fp8"; vLLM converts the 16-bit weights as it '
        "loads them)",
    )
    assert any("quantize to AWQ 4-bit" in c for t in texts for c in t)
    assert [f.cost for f in found] == sorted(f.cost for f in found)


def test_a_fix_that_leaves_one_sequence_ranks_below_one_with_room(catalog):
    # On one A100 40GB a Qwen 32B in FP8 fits with one full-length sequence, AWQ with seven.
    found = fixes([vllm_engine("big", "qwen-2.5-32b-instruct")], "1xA100-40GB", catalog)
    assert "quantize to AWQ 4-bit" in found[0].changes[0]
    assert "quantize to FP8" in found[1].changes[0]
    assert found[1].result == "fits: big 1 of 64 sequences x 8192"


def test_tensor_parallel_is_offered_when_there_are_gpus_to_split_over(catalog):
    engine = vllm_engine("big", LLAMA_70B, quantization="awq")
    found = fixes([engine], "2xA100-40GB", catalog)
    assert found[0].changes == ("big: tensor_parallel_size = 2 (split it over 2 GPUs)",)
    assert found[0].result.startswith("fits: big ")


def test_a_shorter_max_model_len_is_offered_when_one_sequence_is_all_that_is_missing(catalog):
    engine = vllm_engine("small", LLAMA_8B, max_model_len=32768)
    found = fixes([engine], "1xA10-24GB", catalog)
    assert any(fix.changes == ("small: max_model_len = 16384",) for fix in found)


def test_a_given_fraction_that_is_too_small_can_be_left_to_the_planner(catalog):
    engines = [
        vllm_engine("a", LLAMA_8B, gpus=(0,), gpu_memory_utilization=0.20, port=8101,
                    max_model_len=4096),
    ]  # fmt: skip
    found = fixes(engines, "1xA100-80GB", catalog)
    assert found[0].changes == (
        "a: remove gpu_memory_utilization = 0.20 and let the planner size it",
    )


def test_two_engines_pinned_to_one_gpu_are_moved_apart(catalog):
    engines = [
        vllm_engine("a", "qwen-2.5-14b-instruct", gpus=(0,), port=8101),
        vllm_engine("b", "qwen-2.5-14b-instruct", served_name="copy", gpus=(0,), port=8102),
    ]
    found = fixes(engines, "2xA100-40GB", catalog)
    assert found[0].changes == ("let the planner choose the GPUs (remove `gpus` from the engines)",)


def test_dropping_a_model_names_who_serves_its_agents(catalog):
    engines = [
        vllm_engine("big", LLAMA_70B, quantization="awq", port=8101),
        vllm_engine("small", LLAMA_8B, port=8102),
    ]
    found = fixes(engines, "1xL40S-48GB", catalog)
    drops = [c for fix in found for c in fix.changes if c.startswith("drop")]
    assert drops and all("serve its agents from" in c for c in drops)
    assert any(c.startswith("drop small") and c.endswith("from big (llama-3.1-70b-instruct)")
               for c in drops)  # fmt: skip


def test_when_nothing_fits_the_nearest_miss_says_how_far(catalog):
    giant = CatalogEntry(
        params_b=405.0, size_class="405B", layers=126, hidden_size=16384, attention_heads=128,
        kv_heads=8, head_dim=128,
    )  # fmt: skip
    found = fixes([vllm_engine("giant", "giant")], "1xL4-24GB", {"giant": giant})
    (nearest,) = found
    assert not nearest.fits
    assert nearest.result.startswith("still does not fit: ") and "GiB short" in nearest.result


def test_a_plan_that_fits_needs_no_suggestion(catalog):
    assert fixes([vllm_engine("a", LLAMA_8B)], "1xH100-80GB", catalog) == ()
