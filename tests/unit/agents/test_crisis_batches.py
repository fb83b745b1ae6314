"""Training batches of like length (`crisis_finetune.py --length-pools`) still see every row once
an epoch, in batches whose contents beyond length stay random, and pad less."""

from __future__ import annotations

import numpy as np

from benchmarks.crisis_data import length_batches, plain_batches


def _padded(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    return sum(int(lengths[b].max()) * len(b) for b in batches)


def test_every_row_is_in_one_batch_of_the_size_asked() -> None:
    lengths = np.random.default_rng(0).integers(3, 64, size=1000)
    batches = length_batches(lengths.tolist(), 32, 4, np.random.default_rng(1))
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(1000))
    assert len(batches) == -(-1000 // 32)  # as many steps as plain batches
    assert sum(len(b) != 32 for b in batches) == 1  # only the last pool's last batch is short


def test_like_lengths_share_a_batch_and_pad_less_than_a_plain_shuffle() -> None:
    # Mostly short messages, a few long: a plain batch is padded to its one long row.
    rng = np.random.default_rng(2)
    lengths = np.where(rng.random(3200) < 0.1, 60, rng.integers(8, 20, size=3200))
    pooled = length_batches(lengths.tolist(), 32, 10, np.random.default_rng(3))
    plain = plain_batches(len(lengths), 32, np.random.default_rng(3))
    assert _padded(lengths, pooled) < 0.6 * _padded(lengths, plain)
    # Each batch's rows come from one pool of 10 batches of the shuffled order.
    order = np.random.default_rng(3).permutation(len(lengths))
    pool_of = np.empty(len(lengths), int)
    pool_of[order] = np.arange(len(lengths)) // 320
    assert all(len(set(pool_of[b].tolist())) == 1 for b in pooled)
    # The batches are not left in length order.
    maxima = [int(lengths[b].max()) for b in pooled]
    assert maxima != sorted(maxima)


def test_plain_batches_cut_one_shuffle_in_order() -> None:
    # The draw runs before --length-pools took: one permutation an epoch, cut in order.
    batches = plain_batches(70, 32, np.random.default_rng(4))
    order = np.random.default_rng(4).permutation(70)
    assert [b.tolist() for b in batches] == [
        order[:32].tolist(),
        order[32:64].tolist(),
        order[64:].tolist(),
    ]


def test_the_same_seed_gives_the_same_batches() -> None:
    lengths = list(range(100))
    first = length_batches(lengths, 8, 3, np.random.default_rng(5))
    again = length_batches(lengths, 8, 3, np.random.default_rng(5))
    assert all((a == b).all() for a, b in zip(first, again, strict=True))
