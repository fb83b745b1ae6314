"""Train the crisis classifier's head on the corpus' train split; tune it on dev.

    .venv/bin/python benchmarks/crisis_train.py     # writes appliance/agents/crisis_head.npz

Deterministic: the same corpus and encoder give the same head (Newton's method from zeros, no
random numbers). The test split is never read here; `crisis_eval.py` reports on it.

- P(crisis): L2-regularised logistic regression on the sentence vector. Each fine label weighs the
  same, and the crisis side as much as the control side, so a label with many examples does not
  drown one with few. The regularisation strength is chosen on dev.
- The category: a softmax regression over the four crisis categories, on crisis examples only.
- The crisis threshold: the one at which the layered detector (phrase lists, the classifier, the
  framing cues) finds the most dev crises while calling at most `MAX_DEV_FPR` of the dev controls
  a crisis (ties: the higher threshold). The regularisation is chosen the same way. The caution threshold (the grey zone's floor) is a fixed fraction of it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from appliance.agents.classifier import (
    CATEGORIES,
    CATEGORY_OF,
    HEAD_FILE,
    CrisisClassifier,
    Head,
)
from appliance.agents.crisis import detect, framing
from appliance.agents.encoder import shared_encoder
from benchmarks.crisis_data import Example, load

OUT = Path(__file__).resolve().parents[1] / "appliance" / "agents" / HEAD_FILE
STRENGTHS = (0.01, 0.03, 0.1, 0.3, 1.0)
CATEGORY_STRENGTH = 0.1
CAUTION_FRACTION = 0.85
# The classifier decides alone only when no model can judge: a false alarm then costs a crisis
# reply to someone who did not need one, a miss costs a generic reply to someone who did.
MAX_DEV_FPR = 0.10
THRESHOLDS = np.round(np.arange(0.95, 0.04, -0.01), 2)


def vectors(classifier: CrisisClassifier, example: Example) -> np.ndarray:
    return classifier.encoder.encode_segments(classifier.segments(example.text, example.context))


def rows(
    classifier: CrisisClassifier, examples: list[Example]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One row per segment the classifier reads. A crisis spread over turns is labelled on the
    joined turns only: its newest message alone may be harmless ("tonight's the night")."""
    out, crisis, labels = [], [], []
    for example in examples:
        v = vectors(classifier, example)
        keep = v[-1:] if example.context and example.is_crisis else v
        out.append(keep)
        crisis += [example.is_crisis] * len(keep)
        labels += [example.label] * len(keep)
    return np.concatenate(out).astype(np.float64), np.array(crisis, dtype=float), labels


def balanced(labels: list[str], crisis: np.ndarray) -> np.ndarray:
    counts = Counter(labels)
    w = np.array([1.0 / counts[label] for label in labels])
    for side in (0.0, 1.0):
        w[crisis == side] /= w[crisis == side].sum()
    return w * len(labels) / w.sum()


def logistic(x: np.ndarray, y: np.ndarray, w: np.ndarray, strength: float) -> np.ndarray:
    """Newton's method; returns the weights with the bias last."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = strength * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    theta = np.zeros(xa.shape[1])
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-(xa @ theta)))
        grad = xa.T @ ((p - y) * w) + reg @ theta
        hess = (xa * (w * p * (1 - p))[:, None]).T @ xa + reg
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta


def softmax_regression(x: np.ndarray, y: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Plain full-batch gradient descent from zeros; returns (k, d+1) with the bias last."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    theta = np.zeros((k, xa.shape[1]))
    onehot = np.eye(k)[y]
    counts = np.bincount(y, minlength=k).astype(float)
    w = (len(y) / (k * np.maximum(counts, 1)))[y]
    for _ in range(2000):
        logits = xa @ theta.T
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        grad = ((p - onehot) * w[:, None]).T @ xa / len(y) + strength * theta / len(y)
        theta -= 5.0 * grad
    return theta


def layered(head: Head, dev: list[Example], dev_vectors: list[np.ndarray]) -> np.ndarray:
    """For each dev example, a score that the threshold compares: 2 (always flagged) where the
    phrase lists flag it, -1 (never) where a framing cue caps it, else the classifier's."""
    out = []
    for example, v in zip(dev, dev_vectors, strict=True):
        if detect(example.text).is_crisis:
            out.append(2.0)
        elif framing(example.text) is not None:
            out.append(-1.0)
        else:
            out.append(float(head.crisis_probability(v.astype(np.float32)).max()))
    return np.array(out)


def merit(recall: float, fpr: float) -> float:
    return recall if fpr <= MAX_DEV_FPR else -fpr


def tune(
    head: Head, dev: list[Example], dev_vectors: list[np.ndarray]
) -> tuple[float, float, float]:
    """(threshold, dev recall, dev false-positive rate) of the layered detector, best by
    `merit`."""
    scores = layered(head, dev, dev_vectors)
    crisis = np.array([e.is_crisis for e in dev])
    best = (0.95, 0.0, 0.0)
    for t in THRESHOLDS:
        flagged = scores >= t
        recall, fpr = float(flagged[crisis].mean()), float(flagged[~crisis].mean())
        if merit(recall, fpr) > merit(best[1], best[2]):
            best = (float(t), recall, fpr)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    encoder = shared_encoder()
    blank = Head(
        np.zeros(384, np.float32),
        0.0,
        np.zeros((4, 384), np.float32),
        np.zeros(4, np.float32),
        CATEGORIES,
        1.0,
        1.0,
    )
    classifier = CrisisClassifier(encoder, blank)
    train, dev = load("train"), load("dev")
    x, y, labels = rows(classifier, train)
    weights = balanced(labels, y)
    dev_vectors = [vectors(classifier, e) for e in dev]
    chosen: tuple[float, float, float, float, np.ndarray] | None = None
    for strength in STRENGTHS:
        theta = logistic(x, y, weights, strength)
        head = Head(
            theta[:-1].astype(np.float32),
            float(theta[-1]),
            blank.category_w,
            blank.category_b,
            CATEGORIES,
            1.0,
            1.0,
        )
        threshold, recall, fpr = tune(head, dev, dev_vectors)
        print(f"L2 {strength}: dev recall {recall:.3f}, FPR {fpr:.3f} at threshold {threshold}")
        if chosen is None or merit(recall, fpr) > merit(chosen[2], chosen[3]):
            chosen = (strength, threshold, recall, fpr, theta)
    assert chosen is not None
    strength, threshold, recall, fpr, theta = chosen
    crisis_rows = y == 1.0
    category_y = np.array(
        [
            CATEGORIES.index(CATEGORY_OF[label])
            for label, c in zip(labels, crisis_rows, strict=True)
            if c
        ]
    )
    cat = softmax_regression(x[crisis_rows], category_y, len(CATEGORIES), CATEGORY_STRENGTH)
    head = Head(
        theta[:-1].astype(np.float32),
        float(theta[-1]),
        cat[:, :-1].astype(np.float32),
        cat[:, -1].astype(np.float32),
        CATEGORIES,
        threshold,
        round(threshold * CAUTION_FRACTION, 3),
    )
    head.save(args.out)
    print(
        f"chosen L2 {strength}; crisis threshold {head.crisis_threshold}, "
        f"caution {head.caution_threshold}; layered dev recall {recall:.3f}, FPR {fpr:.3f}"
    )
    print(f"train rows {len(y)}; wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
