"""The layered crisis detector on the corpus' test split: recall, false positives, latency, memory.

    .venv/bin/python benchmarks/crisis_eval.py [--split test] [--threads 1]

Prints, for the whole detector as the appliance runs it when the Guardrail model cannot judge
(phrase lists, then the classifier, framing cues capping it):
- recall per crisis category (suicidal ideation with its kinds, self-harm, harm to others, abuse or
  unsafe at home, overdose taken), and the phrase lists' recall alone, for comparison;
- the false-positive rate (called a crisis) and the caution rate on each control and all controls;
- a confusion table: label x (crisis / caution / none);
- with `--by-batch`, recall and false positives per corpus batch, for the batches split as test's
  were, and for the plain batches (test's register) against the others, written longer to what
  the classifier missed (dev is mostly the others, test is all the first ones, so a candidate can
  gain on one and lose on the other);
- the classifier's load time, the latency per message (p50/p99 over every message, each timed
  alone, `--repeat` times, every member of the encoder reading it), the latency added to a Kai
  turn (the message read with two earlier turns), and the added resident memory.
The split is fixed in the corpus files; the test split is only ever read here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


Table = dict[str, Counter[str]]  # label -> verdict level -> examples


def rate(labels: tuple[str, ...], table: Table, level: str) -> str:
    """The share of `labels`' examples given `level`: "0.932 (124/133)"."""
    n = sum(sum(table[x].values()) for x in labels)
    k = sum(table[x][level] for x in labels)
    return f"{k / n:.3f} ({k}/{n})" if n else "-"


def _passes(value: str) -> int:
    """`--repeat`: a whole number of passes, none or more."""
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more; got {value!r}")
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="test", choices=("train", "dev", "test"))
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS threads for numpy's small steps (the layers run on onnxruntime, one thread)",
    )
    parser.add_argument(
        "--repeat",
        type=_passes,
        default=3,
        help="timed passes over the split (0: verdicts only, no latency)",
    )
    parser.add_argument(
        "--by-batch", action="store_true", help="also recall and false positives per corpus batch"
    )
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    before = _rss_mb()
    from appliance.agents.classifier import CrisisClassifier
    from appliance.agents.crisis import detect
    from appliance.agents.detector import CrisisDetector
    from appliance.quantiles import quantile_sorted as quantile
    from benchmarks.crisis_data import (
        CONTROL_LABELS,
        CRISIS_LABELS,
        LABELS,
        LAST_HASHED_BATCH,
        PLAIN_BATCHES,
        REPORTED,
        load,
    )

    started = time.perf_counter()
    classifier = CrisisClassifier.load()
    load_s = time.perf_counter() - started
    detector = CrisisDetector(classifier)
    examples = load(args.split)
    detector.detect("warm up", ())
    after_load = _rss_mb()

    outcome: Table = defaultdict(Counter)
    by_patterns: Table = defaultdict(Counter)
    by_batch: dict[int, Table] = defaultdict(lambda: defaultdict(Counter))
    latencies: list[float] = []
    for example in examples:
        found = detector.detect(example.text, example.context)
        outcome[example.label][found.level] += 1
        by_batch[example.batch][example.label][found.level] += 1
        by_patterns[example.label][detect(example.text).level] += 1
    turn_latencies: list[float] = []
    for _ in range(args.repeat):
        for i, example in enumerate(examples):
            t0 = time.perf_counter()
            detector.detect(example.text, example.context)
            latencies.append(time.perf_counter() - t0)
            # A Kai turn reads the message with the person's two turns before it.
            history = [examples[i - 2].text, examples[i - 1].text]
            t0 = time.perf_counter()
            detector.detect(example.text, history)
            turn_latencies.append(time.perf_counter() - t0)
    peak = _rss_mb()

    crisis_n = sum(sum(outcome[x].values()) for x in CRISIS_LABELS)
    control_n = sum(sum(outcome[x].values()) for x in CONTROL_LABELS)
    print(
        f"crisis corpus, {args.split} split: {len(examples)} examples "
        f"({crisis_n} crisis, {control_n} controls); BLAS threads {args.threads}"
    )
    print("\nrecall (called a crisis) per crisis category   layered   phrase lists alone")
    for name, labels in REPORTED.items():
        print(
            f"  {name:<28}{rate(labels, outcome, 'crisis'):>16}   "
            f"{rate(labels, by_patterns, 'crisis'):>16}"
        )
        if len(labels) > 1:
            for label in labels:
                print(
                    f"    {label:<26}{rate((label,), outcome, 'crisis'):>16}   "
                    f"{rate((label,), by_patterns, 'crisis'):>16}"
                )
    print(
        f"  {'all crisis':<28}{rate(CRISIS_LABELS, outcome, 'crisis'):>16}   "
        f"{rate(CRISIS_LABELS, by_patterns, 'crisis'):>16}"
    )
    print("\ncontrols: false-positive rate (crisis) and caution rate")
    for label in CONTROL_LABELS:
        print(
            f"  {label:<28}FPR {rate((label,), outcome, 'crisis'):>14}   "
            f"caution {rate((label,), outcome, 'caution'):>14}"
        )
    print(
        f"  {'all controls':<28}FPR {rate(CONTROL_LABELS, outcome, 'crisis'):>14}   "
        f"caution {rate(CONTROL_LABELS, outcome, 'caution'):>14}"
    )
    print("\nconfusion (label x verdict)      crisis  caution     none")
    for label in LABELS:
        row = outcome[label]
        print(f"  {label:<28}{row['crisis']:>8}{row['caution']:>9}{row['none']:>9}")
    if args.by_batch:
        print("\nby corpus batch                      recall        false positives")
        first: Table = defaultdict(Counter)
        plain: Table = defaultdict(Counter)
        other: Table = defaultdict(Counter)
        rows = []
        for number, table in sorted(by_batch.items()):
            rows.append((f"batch {number}", table))
            for label, levels in table.items():
                if number <= LAST_HASHED_BATCH:
                    first[label].update(levels)
                (plain if number in PLAIN_BATCHES else other)[label].update(levels)
        rows += [
            (f"batches 1 to {LAST_HASHED_BATCH}", first),
            ("plain batches", plain),
            ("other batches", other),
        ]
        for name, table in rows:
            print(
                f"  {name:<30}{rate(CRISIS_LABELS, table, 'crisis'):>18}   "
                f"{rate(CONTROL_LABELS, table, 'crisis'):>16}"
            )
    print(
        f"\nclassifier load {load_s:.2f} s; its encoder's {classifier.encoder.members} "
        f"member(s), each a session of the layers ({classifier.encoder.weights} matrices), "
        f"built on first use in {classifier.encoder.build_s:.2f} s"
    )
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        turn = sorted(x * 1000 for x in turn_latencies)
        print(
            f"latency per message over {len(ms)} timings: p50 {quantile(ms, 0.5):.2f} ms, "
            f"p99 {quantile(ms, 0.99):.2f} ms, max {ms[-1]:.2f} ms"
        )
        print(
            "added to a Kai turn (the message and two earlier turns, read by every member): "
            f"p50 {quantile(turn, 0.5):.2f} ms, p99 {quantile(turn, 0.99):.2f} ms"
        )
    else:
        print("latency not timed (--repeat 0)")
    print(
        f"memory: +{after_load - before:.0f} MiB resident after load "
        f"(+{peak - before:.0f} MiB at the end of the run)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
