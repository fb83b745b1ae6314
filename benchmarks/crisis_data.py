"""The crisis corpus: labelled messages written for this project, with a fixed split.

`benchmarks/crisis_corpus/<label>.jsonl` holds one record a line: `id`, `label` (a fine label:
the crisis kinds `si_*`, `self_harm`, `harm_others`, `abuse`, `overdose`, and the controls),
`split` (train, dev or test: fixed in the files, never recomputed) and either `text` (one message)
or `turns` (a person's consecutive messages, the newest last). `multi_turn.jsonl` mixes labels.
The test split is only for reporting (`crisis_eval.py`); training uses train, tuning uses dev.
A file's batch is the number after its label (`abuse_39.jsonl`: 39; `abuse.jsonl`: 1). Batches 1 to
5 were split by a hash of the text and hold every test message; later batches were written to what
the classifier still missed and hold train and dev only, every fifth record of a file dev.
Batches 1 to 5 are short lowercase chat messages (about nine words); batches 6 to 39 grew longer
and subtler (17 to 19 words) and outnumber them eighteen to one. Batches 40 to 50 were written in
the first batches' register again, 41 and 42 mostly hard controls, 43 farewells set beside the
ordinary endings they resemble, 44 farewells, plans and acute danger (last acts, things handed on,
the future cancelled, edges) with past episodes and everyday endings beside them, 45 bare times and
sign-offs ("friday then") alone and after plans and after everyday talk, 46 the kinds still found
least (farewells, self-harm under way, acute danger, passive wishes, harm to others, abuse) with
everyday endings, accidents, past episodes, idioms, denials and others' stories beside them, 47
farewells (things handed on "for after", plans cancelled, notes to be read later) beside everyday
endings, with danger, self-harm, passive wishes, harm to others, abuse, denials, idioms and past
episodes, 48 the same kinds again in other words, 49 those kinds once more with ordinary low
moods and griefs beside them, and 50 every kind dev still finds least (farewells most, with passive
wishes, means, plans, danger, self-harm, harms to others and abuse) beside everyday endings, past
episodes, idioms, denials, others' crises and low moods. `register_truth` lets the two registers
weigh the same where dev chooses, and holds the plain controls to the cap on their own.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

CORPUS = Path(__file__).resolve().parent / "crisis_corpus"
CRISIS_LABELS = (
    "si_direct",
    "si_passive",
    "si_burden",
    "si_farewell",
    "si_plan",
    "si_means",
    "si_danger",
    "self_harm",
    "harm_others",
    "abuse",
    "overdose",
)
CONTROL_LABELS = (
    "idiom",
    "negation",
    "past",
    "third_person",
    "grief",
    "accident",
    "low_mood",
    "everyday",
)
LABELS = CRISIS_LABELS + CONTROL_LABELS
# The last batch whose files were split as test's were (by a hash of the text).
LAST_HASHED_BATCH = 5
# The batches in the register of the hashed ones, test's: short lowercase chat messages.
PLAIN_BATCHES = frozenset((*range(1, LAST_HASHED_BATCH + 1), *range(40, 51)))
# The categories reported: suicidal ideation as one, with its kinds listed beside it.
REPORTED = {
    "suicidal_ideation": tuple(x for x in CRISIS_LABELS if x.startswith("si_")),
    "self_harm": ("self_harm",),
    "harm_to_others": ("harm_others",),
    "abuse_or_unsafe_home": ("abuse",),
    "overdose_taken": ("overdose",),
}


@dataclass(frozen=True, slots=True)
class Example:
    id: str
    label: str
    split: str
    turns: tuple[str, ...]
    batch: int = 1  # the corpus file's batch (see the module's docstring)

    @property
    def text(self) -> str:
        return self.turns[-1]

    @property
    def context(self) -> tuple[str, ...]:
        return self.turns[:-1]

    @property
    def is_crisis(self) -> bool:
        return self.label in CRISIS_LABELS


def batch_of(path: Path) -> int:
    """The batch of a corpus file: the number after its label, 1 where there is none."""
    found = re.search(r"_(\d+)$", path.stem)
    return int(found.group(1)) if found else 1


@dataclass(frozen=True)
class Truth:
    """What dev knows where it chooses: each example's weight (`register_truth`) and which
    controls are of `PLAIN_BATCHES`, test's register, whose false-positive rate alone must also
    keep under the cap (`crisis_train.rates`): a mean over both registers can hide the plain one."""

    weights: npt.NDArray[np.float64]
    plain_controls: npt.NDArray[np.bool_]


def register_truth(examples: Sequence[Example]) -> Truth:
    """Each example's weight where dev chooses: for a crisis a positive share of the recall, for a
    control a negative share of the false-positive rate, such that within each side the examples
    of `PLAIN_BATCHES` weigh as much in all as those of the other batches (or all alike where
    either group has none). Dev's later batches outnumber its plain ones about four to one, and a
    choice by plain counts on dev would follow them, not the register test is written in."""
    crisis = np.array([e.is_crisis for e in examples], dtype=bool)
    plain = np.array([e.batch in PLAIN_BATCHES for e in examples], dtype=bool)
    weights = np.where(crisis, 1.0, -1.0)
    for side in (crisis, ~crisis):
        groups = (side & plain, side & ~plain)
        if all(g.any() for g in groups):
            for group in groups:
                weights[group] /= 2 * group.sum()
    return Truth(weights, ~crisis & plain)


def load(split: str | None = None, corpus: Path = CORPUS) -> list[Example]:
    """Every example (of one split, if given), in file order."""
    out = []
    for path in sorted(corpus.glob("*.jsonl")):
        batch = batch_of(path)
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            turns = tuple(record["turns"]) if "turns" in record else (record["text"],)
            example = Example(record["id"], record["label"], record["split"], turns, batch)
            if split is None or example.split == split:
                out.append(example)
    return out


def label_weight(spec: str) -> tuple[str, float]:
    """`LABEL=K` as (label, K): a known label and a positive, finite K, else ValueError by name,
    so a typo is refused when the arguments are read rather than quietly weighing nothing."""
    label, _, factor = spec.partition("=")
    try:
        k = float(factor)
    except ValueError:
        k = 0.0
    if label not in LABELS or not 0 < k < math.inf:
        raise ValueError(
            f"{spec!r}: expected LABEL=K with LABEL one of "
            f"{', '.join(LABELS)} and K a positive, finite number"
        )
    return label, k


def row_boost(
    labels: Sequence[str],
    plain: npt.NDArray[np.bool_],
    plain_weight: float = 1.0,
    label_weights: Sequence[tuple[str, float]] = (),
) -> npt.NDArray[np.float64]:
    """Each training row's multiplier within its side: `plain_weight` for the plain batches' rows,
    times K for each (LABEL, K) in `label_weights` (see `label_weight`). A label with no row
    raises ValueError by name: its weight would change nothing."""
    boost = np.where(plain, plain_weight, 1.0).astype(np.float64)
    names = np.array(labels)
    for label, k in label_weights:
        rows = names == label
        if not rows.any():
            raise ValueError(f"--label-weight {label}={k:g}: no training row has label {label!r}")
        boost[rows] *= k
    return boost


def plain_batches(count: int, size: int, rng: np.random.Generator) -> list[npt.NDArray[np.int64]]:
    """Row indices in batches of `size` for one epoch, in a shuffled order."""
    order = rng.permutation(count)
    return [order[i : i + size] for i in range(0, count, size)]


def length_batches(
    lengths: Sequence[int], size: int, pool: int, rng: np.random.Generator
) -> list[npt.NDArray[np.int64]]:
    """Row indices in batches of `size` for one epoch: shuffled, each run of `pool` batches sorted
    by length and cut into batches, the batches then shuffled. A batch is padded to its longest
    row, and most messages are short, so a batch of like lengths pads far less; the pool keeps
    what shares a batch random in all else."""
    order = rng.permutation(len(lengths))
    by_length = np.asarray(lengths)
    span = size * pool
    batches: list[npt.NDArray[np.int64]] = []
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(by_length[chunk], kind="stable")]
        batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
    return [batches[i] for i in rng.permutation(len(batches))]
