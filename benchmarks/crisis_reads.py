"""What one read of the crisis classifier's encoder costs on this host, by segment length.

A message is one segment per member, a Kai turn two (the message and the joined turns), and the
members read at the same time, one per core. This prints, for segments of a few lengths, the
median time of one member reading alone, of both members reading it at once (what a message
costs), and of both members reading it beside a 40-word-piece context segment (what a Kai turn
costs), so a host's per-message and per-turn figures from `crisis_eval.py` can be told apart into
the time per read, the time that does not fall with the words, and what two reads at once cost
against one. Usage:

    OMP_NUM_THREADS=1 python benchmarks/crisis_reads.py [--runs 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TEXT = "we walked along the river after work and talked about the week and what comes next " * 8


def median_ms(read: Callable[[], object], runs: int) -> float:
    for _ in range(5):
        read()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        read()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="timed reads per figure")
    args = parser.parse_args()

    from appliance.agents.classifier import CONTEXT_TOKENS, single_threaded_blas
    from appliance.agents.encoder import (
        SEGMENT_TOKENS,
        classifier_encoder,
        exact_int8,
        packaged_adapters,
    )

    single_threaded_blas()
    adapters = packaged_adapters()
    alone = classifier_encoder(adapters[:1])
    pair = classifier_encoder(adapters)
    words = alone.tokens(TEXT)
    context = words[:CONTEXT_TOKENS]
    print(
        f"products: {'int8' if exact_int8() else 'uint8 (int8 is not exact here)'}; "
        f"{len(adapters)} member(s); median of {args.runs} reads, ms"
    )
    print(f"{'word pieces':>12}{'one member':>14}{'both at once':>16}{'both, with context':>22}")
    # Word pieces with [CLS] and [SEP], up to the most a segment holds.
    for length in (3, 16, 42, SEGMENT_TOKENS):
        segment = words[: length - 2]
        one = median_ms(lambda s=segment: alone.encode_segments([s]), args.runs)
        both = median_ms(lambda s=segment: pair.encode_segments([s]), args.runs)
        turn = median_ms(lambda s=segment: pair.encode_segments([s, context]), args.runs)
        print(f"{length:>12}{one:>14.2f}{both:>16.2f}{turn:>22.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
