"""Declared GPU specs: the what-if hardware an operator can plan for without the cards."""

from __future__ import annotations

import pytest

from appliance.errors import GpuSpecError
from appliance.monitor.nvml import GpuInfo
from appliance.placement.gpus import MIB, describe, from_nvml, parse_gpu_spec


@pytest.mark.parametrize(
    ("spec", "count", "name", "mib"),
    [
        ("2xA100-40GB", 2, "A100-40GB", 40960),
        ("1xH100-80GB", 1, "H100-80GB", 81559),
        ("4xL40S-48GB", 4, "L40S-48GB", 46068),
        ("1xA100-80GB", 1, "A100-80GB", 81920),
        ("2xH200-141GB", 2, "H200-141GB", 143771),
        ("2xa100-40gb", 2, "A100-40GB", 40960),
    ],
)
def test_known_cards_have_the_memory_nvidia_smi_reports(spec, count, name, mib):
    gpus = parse_gpu_spec(spec)
    assert [g.index for g in gpus] == list(range(count))
    assert {g.name for g in gpus} == {name}
    assert {g.total for g in gpus} == {mib * MIB}
    assert all(g.free == g.total and g.source == "declared" for g in gpus)


def test_an_unknown_card_counts_its_gigabytes_as_decimal():
    (gpu,) = parse_gpu_spec("1xMI300X-192GB")
    assert gpu.name == "MI300X-192GB"
    assert gpu.total == 192 * 10**9


def test_kinds_joined_with_plus_are_numbered_in_order():
    gpus = parse_gpu_spec("1xA100-80GB + 2xA100-40GB")
    assert [(g.index, g.name) for g in gpus] == [
        (0, "A100-80GB"),
        (1, "A100-40GB"),
        (2, "A100-40GB"),
    ]
    assert describe(gpus) == "1x A100-80GB + 2x A100-40GB"


def test_none_declares_no_gpus():
    assert parse_gpu_spec("none") == []
    assert parse_gpu_spec("") == []


@pytest.mark.parametrize(
    "spec", ["A100-40GB", "2xA100", "2x-40GB", "0xA100-40GB", "65xA100-40GB", "2xA100-0GB", "x"]
)
def test_a_bad_spec_says_what_was_expected(spec):
    with pytest.raises(GpuSpecError) as caught:
        parse_gpu_spec(spec)
    assert caught.value.got == spec
    assert str(caught.value).startswith("expected ")


def test_nvml_readings_keep_their_free_memory():
    info = GpuInfo(
        index=3, name="NVIDIA A100-SXM4-40GB", memory_total=100, memory_used=30, memory_free=70
    )
    (gpu,) = from_nvml([info])
    assert (gpu.index, gpu.total, gpu.free, gpu.source) == (3, 100, 70, "nvml")
