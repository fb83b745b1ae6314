"""The crisis corpus holds what its evaluation relies on: unique ids, known labels, a fixed split
with every label in each part, and no message in two parts (a test message seen in training would
flatter the figures)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from benchmarks.crisis_data import (
    CORPUS,
    LABELS,
    LAST_HASHED_BATCH,
    PLAIN_BATCHES,
    Example,
    Truth,
    batch_of,
    label_weight,
    load,
    register_truth,
    row_boost,
)
from benchmarks.crisis_train import balanced, pick, rates

SPLITS = ("train", "dev", "test")


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", "", " ".join(text.lower().split()))


def test_every_record_has_a_unique_id_a_known_label_and_a_split() -> None:
    ids: Counter[str] = Counter()
    for path in sorted(CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            ids[record["id"]] += 1
            assert record["label"] in LABELS, record["id"]
            assert record["split"] in SPLITS, record["id"]
            assert ("text" in record) != ("turns" in record), record["id"]
    assert len(ids) >= 1000
    assert [i for i, n in ids.items() if n > 1] == []


def test_every_label_is_in_every_split() -> None:
    for split in SPLITS:
        labels = {example.label for example in load(split)}
        assert labels == set(LABELS), split


def test_no_message_is_in_two_splits() -> None:
    seen: dict[str, str] = {}
    crossing = []
    for split in SPLITS:
        for example in load(split):
            key = _key(" / ".join(example.turns))
            if seen.setdefault(key, split) != split:
                crossing.append((seen[key], split, example.id))
    assert crossing == []


def test_a_files_batch_is_the_number_after_its_label() -> None:
    assert batch_of(Path("si_farewell_39.jsonl")) == 39
    assert batch_of(Path("multi_turn_2.jsonl")) == 2
    assert batch_of(Path("self_harm.jsonl")) == 1
    assert {e.batch for e in load() if e.id.startswith("abuse-39")} == {39}


def test_only_the_hashed_batches_hold_test_messages() -> None:
    batches = {example.batch for example in load("test")}
    assert batches == set(range(1, LAST_HASHED_BATCH + 1))
    assert max(example.batch for example in load("dev")) > LAST_HASHED_BATCH


def _example(label: str, batch: int) -> Example:
    return Example(f"{label}-{batch}", label, "dev", ("text",), batch)


def test_register_truth_gives_each_register_half_of_each_side() -> None:
    examples = (
        [_example("si_plan", 1)] * 2
        + [_example("abuse", 40)] * 2
        + [_example("si_plan", 20)] * 16
        + [_example("everyday", 1), _example("idiom", 20), _example("past", 21)]
    )
    truth = register_truth(examples)
    weights = truth.weights
    assert list(weights[:4]) == [0.125] * 4
    assert list(weights[4:20]) == [0.5 / 16] * 16
    assert list(weights[20:]) == [-0.5, -0.25, -0.25]
    # One register alone: every crisis weighs the same, and every control.
    alone = register_truth([_example("si_plan", 20), _example("grief", 1)])
    assert list(alone.weights) == [1.0, -1.0]
    assert list(truth.plain_controls) == [False] * 20 + [True, False, False]


def test_a_plain_false_positive_weighs_as_much_as_all_the_later_ones() -> None:
    examples = [_example("si_plan", 20)] + [_example("everyday", 40)] * 10
    examples += [_example("everyday", 30)] * 90
    flagged = np.array([True] + [True] + [False] * 9 + [False] * 90)
    assert rates(flagged, np.array([e.is_crisis for e in examples])) == (1.0, 0.01)
    truth = register_truth(examples)
    mean_only = Truth(truth.weights, np.zeros(len(examples), dtype=bool))
    assert rates(flagged, mean_only) == (1.0, pytest.approx(0.05))
    # The plain controls' own rate, 1 in 10, is the higher, and counts.
    assert rates(flagged, truth) == (1.0, pytest.approx(0.1))


def test_the_plain_controls_alone_must_keep_under_the_cap() -> None:
    # 2 of 40 plain controls flagged (0.05) and none of the 400 later: the mean by register is
    # 0.025, under a cap of 0.03, but the plain rate alone is over it.
    examples = [_example("si_plan", 3), _example("si_plan", 30)]
    examples += [_example("everyday", 40)] * 40 + [_example("past", 30)] * 400
    truth = register_truth(examples)
    flagged = np.array([True, True] + [True] * 2 + [False] * 438)
    assert rates(flagged, truth) == (1.0, pytest.approx(0.05))
    # A candidate that flags the same plain controls fails the cap, one that flags later ones
    # passes: the scores put the plain controls, or 12 later ones, above the crises' 0.9.
    plain_high = np.array([0.9, 0.9] + [0.95] * 2 + [0.1] * 438)
    later_high = np.array([0.9, 0.9] + [0.1] * 40 + [0.95] * 12 + [0.1] * 388)
    assert pick(plain_high, truth)[1] == 0.0
    assert pick(later_high, truth)[1:] == (1.0, pytest.approx(0.5 * 12 / 400))
    unweighted = np.array([e.is_crisis for e in examples])
    assert pick(plain_high, unweighted)[1] == 1.0


def test_weighed_by_register_dev_prefers_the_candidate_that_finds_the_plain_crisis() -> None:
    examples = (
        [_example("si_farewell", 3)]
        + [_example("si_farewell", 30)] * 20
        + [_example("everyday", 30)] * 40
    )
    controls = [0.1] * 40
    # A misses the one plain crisis and finds every later one; B the reverse of five of them.
    a = np.array([0.01] + [0.99] * 20 + controls)
    b = np.array([0.99] + [0.99] * 15 + [0.01] * 5 + controls)
    unweighted = np.array([e.is_crisis for e in examples])
    assert pick(a, unweighted)[1] == pytest.approx(20 / 21)
    assert pick(b, unweighted)[1] == pytest.approx(16 / 21)
    truth = register_truth(examples)
    assert pick(a, truth)[1:] == (pytest.approx(0.5), 0.0)
    assert pick(b, truth)[1:] == (pytest.approx(0.5 + 0.5 * 15 / 20), 0.0)
    assert 40 in PLAIN_BATCHES and 3 in PLAIN_BATCHES and 30 not in PLAIN_BATCHES


def test_a_boost_moves_weight_within_a_side_and_keeps_each_sides_total() -> None:
    labels = ["si_plan"] * 4 + ["everyday"] * 4
    crisis = np.array([1.0] * 4 + [0.0] * 4)
    weights = balanced(labels, crisis, np.array([3.0, 1, 1, 1, 1, 1, 1, 1]))
    assert weights[:4].sum() == pytest.approx(4.0) and weights[4:].sum() == pytest.approx(4.0)
    assert weights[0] == pytest.approx(3 * weights[1])
    assert list(weights[4:]) == pytest.approx([1.0] * 4)
    assert list(balanced(labels, crisis)) == pytest.approx([1.0] * 8)


def test_a_label_weight_multiplies_that_labels_rows_on_top_of_the_plain_weight() -> None:
    labels = ["si_farewell", "si_farewell", "si_plan", "everyday"]
    plain = np.array([True, False, True, False])
    boost = row_boost(labels, plain, 3.0, [label_weight("si_farewell=2")])
    assert list(boost) == [6.0, 2.0, 3.0, 1.0]
    assert list(row_boost(labels, plain)) == [1.0] * 4
    assert label_weight("everyday=0.5") == ("everyday", 0.5)


@pytest.mark.parametrize(
    "spec",
    ["si_farewel=2", "si_farewell=0", "si_farewell=two", "si_farewell", "=2", "si_farewell=inf"],
)
def test_a_label_weight_that_is_not_a_known_label_and_a_positive_number_is_refused(
    spec: str,
) -> None:
    with pytest.raises(ValueError, match="expected LABEL=K") as refused:
        label_weight(spec)
    assert repr(spec) in str(refused.value) and "si_farewell" in str(refused.value)


def test_a_label_weight_for_a_label_train_lacks_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="no training row has label 'abuse'"):
        row_boost(["si_farewell", "everyday"], np.array([False, False]), 1.0, [("abuse", 2.0)])
