"""The crisis corpus holds what its evaluation relies on: unique ids, known labels, a fixed split
with every label in each part, and no message in two parts (a test message seen in training would
flatter the figures)."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from benchmarks.crisis_data import (
    CONTROL_LABELS,
    CORPUS,
    CRISIS_LABELS,
    LAST_HASHED_BATCH,
    batch_of,
    load,
)

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
            assert record["label"] in (*CRISIS_LABELS, *CONTROL_LABELS), record["id"]
            assert record["split"] in SPLITS, record["id"]
            assert ("text" in record) != ("turns" in record), record["id"]
    assert len(ids) >= 1000
    assert [i for i, n in ids.items() if n > 1] == []


def test_every_label_is_in_every_split() -> None:
    for split in SPLITS:
        labels = {example.label for example in load(split)}
        assert labels == {*CRISIS_LABELS, *CONTROL_LABELS}, split


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
