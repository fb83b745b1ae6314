"""The crisis classifier: sentence embeddings and a small trained head, no engine involved.

The phrase lists in `crisis.py` catch plain statements instantly; people in crisis often speak
indirectly ("soon I won't be anyone's problem", "I looked up how high the car park roof is"). This
layer reads meaning: the newest message, and the last few turns joined, are embedded by the
MiniLM encoder (`encoder.py`: two members, each fine-tuned to the corpus by its own adapter, their
vectors end to end), and a head trained on the project's labelled corpus
(`benchmarks/crisis_corpus/`, by `benchmarks/crisis_finetune.py` and `crisis_train.py`) gives the
chance that the person is in crisis, and which kind.
Above the crisis threshold it is a crisis; between the caution and the crisis thresholds (the grey
zone) a gentle offer of resources. The crisis threshold may differ by the kind the head reads.

The verdict holds a level, categories and a score, never the text, so it is safe to log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from threadpoolctl import threadpool_limits

from appliance.agents.crisis import CrisisSignal, Level
from appliance.agents.encoder import Encoder
from appliance.config.schema import CrisisCategory
from appliance.errors import EncoderMissing

HEAD_FILE = "crisis_head.npz"
CONTEXT_TURNS = 3  # the newest user turn and up to two before it, joined, are read as one
# The joined turns are read by their last 40 word pieces (the newest turn and what came just
# before it): a Kai turn's two segments then stay within 20 ms p99 on one core.
CONTEXT_TOKENS = 40
MAX_WINDOWS = 2  # a long message is read in at most this many segments (its start and end)

# The corpus' fine labels and the crisis category each stands for; labels not here are controls.
CATEGORY_OF: dict[str, CrisisCategory] = {
    "si_direct": "suicide",
    "si_passive": "suicide",
    "si_burden": "suicide",
    "si_farewell": "suicide",
    "si_plan": "suicide",
    "si_means": "suicide",
    "si_danger": "suicide",
    "overdose": "suicide",
    "self_harm": "self_harm",
    "harm_others": "harm_to_others",
    "abuse": "abuse",
}
CATEGORIES: tuple[CrisisCategory, ...] = ("suicide", "self_harm", "harm_to_others", "abuse")


@dataclass(frozen=True, slots=True)
class Head:
    """Small layers over a sentence vector: P(crisis) from one hidden ReLU layer or, in a linear
    head, from the vector itself; a softmax over the crisis categories that says which kind; the
    two thresholds. On the frozen vector a linear head cannot bend around the hard controls ("I'm
    driving to the coast tomorrow" beside "I'm driving to the cliff tonight") and a hidden layer
    found more dev crises; with the encoder adapted, the linear head trained with the adapter
    can find more than a hidden layer fitted afterwards, so both kinds load."""

    crisis_w: npt.NDArray[np.float32]  # (hidden,), or (width,) without a hidden layer
    crisis_b: float
    category_w: npt.NDArray[np.float32]  # (categories, width)
    category_b: npt.NDArray[np.float32]  # (categories,)
    categories: tuple[CrisisCategory, ...]
    crisis_threshold: float
    caution_threshold: float
    hidden_w: npt.NDArray[np.float32] | None = None  # (width, hidden)
    hidden_b: npt.NDArray[np.float32] | None = None  # (hidden,)
    # A framing cue caps a classifier crisis at caution unless P(crisis) reaches this; None: the
    # cue always caps. Chosen on dev with the crisis threshold: the cues are word lists, and a
    # message can carry one and still be a crisis ("is it normal to feel relieved when i see
    # the blood?").
    cue_override: float | None = None
    # The crisis threshold for each of `categories`, in that order, applied by the kind the head
    # reads in the worst segment; None: `crisis_threshold` for every kind. Chosen on dev
    # (`crisis_train.py`): the controls that read as one kind may sit further below its crises
    # than those of another, and one threshold for all cannot follow that.
    category_thresholds: tuple[float, ...] | None = None

    @classmethod
    def load(cls, path: Path | None = None) -> Head:
        if path is None:
            with resources.as_file(resources.files("appliance.agents") / HEAD_FILE) as found:
                return cls.load(found)
        with np.load(path, allow_pickle=False) as data:
            written = [str(x) for x in data["categories"]]
            categories = tuple(c for c in CATEGORIES if c in written)
            by_kind = None
            if "category_thresholds" in data:
                named = dict(zip(written, data["category_thresholds"].tolist(), strict=True))
                by_kind = tuple(float(named[c]) for c in categories)
            return cls(
                crisis_w=data["crisis_w"].astype(np.float32),
                crisis_b=float(data["crisis_b"]),
                category_w=data["category_w"].astype(np.float32),
                category_b=data["category_b"].astype(np.float32),
                categories=categories,
                crisis_threshold=float(data["crisis_threshold"]),
                caution_threshold=float(data["caution_threshold"]),
                hidden_w=data["hidden_w"].astype(np.float32) if "hidden_w" in data else None,
                hidden_b=data["hidden_b"].astype(np.float32) if "hidden_b" in data else None,
                cue_override=float(data["cue_override"]) if "cue_override" in data else None,
                category_thresholds=by_kind,
            )

    def save(self, path: Path) -> None:
        optional: dict[str, Any] = {}
        if self.hidden_w is not None and self.hidden_b is not None:
            optional = {"hidden_w": self.hidden_w.astype(np.float32), "hidden_b": self.hidden_b}
        if self.cue_override is not None:
            optional["cue_override"] = np.float64(self.cue_override)
        if self.category_thresholds is not None:
            optional["category_thresholds"] = np.array(self.category_thresholds, np.float64)
        np.savez_compressed(
            path,
            **optional,
            crisis_w=self.crisis_w.astype(np.float32),
            crisis_b=np.float64(self.crisis_b),
            category_w=self.category_w.astype(np.float32),
            category_b=self.category_b.astype(np.float32),
            categories=np.array(self.categories),
            crisis_threshold=np.float64(self.crisis_threshold),
            caution_threshold=np.float64(self.caution_threshold),
        )

    def crisis_probability(self, vectors: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        x = vectors.astype(np.float32)
        if self.hidden_w is not None and self.hidden_b is not None:
            x = np.maximum(x @ self.hidden_w + self.hidden_b, 0.0)
        logits = x.astype(np.float64) @ self.crisis_w + self.crisis_b
        out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-logits))
        return out

    @property
    def width(self) -> int:
        """Numbers in the sentence vector it reads (384 from each of the encoder's members)."""
        return int(self.category_w.shape[1])

    def threshold_for(self, category: CrisisCategory) -> float:
        """The crisis threshold for a segment the head reads as `category`."""
        if self.category_thresholds is None:
            return self.crisis_threshold
        return self.category_thresholds[self.categories.index(category)]

    def outweighs_cue(self, score: float) -> bool:
        """Whether P(crisis) `score` is sure enough to stand against a framing cue."""
        return self.cue_override is not None and score >= self.cue_override

    def category(self, vector: npt.NDArray[np.float32]) -> CrisisCategory:
        logits = vector @ self.category_w.T + self.category_b
        return self.categories[int(logits.argmax())]


def single_threaded_blas() -> None:
    """numpy's BLAS in one thread for the rest of the process. The classifier's products are
    small and run on one worker thread beside the event loop (`detect_worker.py`); OpenBLAS's
    own threads, started for the adapter's products there, spun for minutes when other work held
    the cores, and a guardrail check never answered. One thread gains nothing at these sizes."""
    threadpool_limits(limits=1, user_api="blas")


@dataclass(frozen=True, slots=True)
class ClassifierVerdict:
    """What the classifier saw: a level, the categories, and P(crisis) of the worst segment."""

    level: Level
    categories: tuple[CrisisCategory, ...]
    score: float

    @property
    def signal(self) -> CrisisSignal:
        return CrisisSignal(self.level, self.categories if self.level != "none" else ())


class CrisisClassifier:
    """The embedding layer of crisis detection; built once at start, shared by every request."""

    def __init__(self, encoder: Encoder, head: Head) -> None:
        if head.width != encoder.width:
            raise EncoderMissing(
                f"the crisis head reads vectors of {head.width} numbers and the encoder's "
                f"adapters give {encoder.width}; reinstall the package"
            )
        self.encoder = encoder
        self.head = head
        self.load_s = 0.0

    @classmethod
    def load(cls, encoder: Encoder | None = None, head: Head | None = None) -> CrisisClassifier:
        """The packaged encoder and head; takes a fraction of a second (see `load_s`)."""
        from appliance.agents.encoder import shared_encoder

        single_threaded_blas()
        started = time.perf_counter()
        classifier = cls(encoder or shared_encoder(), head or Head.load())
        classifier.load_s = time.perf_counter() - started
        return classifier

    def segments(self, text: str, context: Sequence[str] = ()) -> list[list[int]]:
        """Word-piece segments to read: the newest message (a long one by its start and end),
        and, when there are earlier user turns, the last few turns joined, newest last."""
        room = self.encoder.room
        tokens = self.encoder.tokens(text)
        windows = [tokens[i : i + room] for i in range(0, max(len(tokens), 1), room)]
        if len(windows) > MAX_WINDOWS:
            windows = [windows[0], windows[-1]]
        earlier = [t for t in context if t.strip()][-(CONTEXT_TURNS - 1) :]
        if earlier:
            joined = self.encoder.tokens("\n".join([*earlier, text]))
            windows.append(joined[-min(room, CONTEXT_TOKENS) :])
        return windows

    def classify(self, text: str, context: Sequence[str] = ()) -> ClassifierVerdict:
        """The verdict on the newest message `text`, read with the earlier user turns `context`."""
        vectors = self.encoder.encode_segments(self.segments(text, context))
        return self.judge(vectors)

    def judge(self, vectors: npt.NDArray[np.float32]) -> ClassifierVerdict:
        """The verdict from the segments' vectors: the worst segment decides, by the threshold of
        the kind it reads as."""
        scores = self.head.crisis_probability(vectors)
        worst = int(scores.argmax())
        score = float(scores[worst])
        category = self.head.category(vectors[worst])
        if score >= self.head.threshold_for(category):
            return ClassifierVerdict("crisis", (category,), score)
        if score >= self.head.caution_threshold:
            return ClassifierVerdict("caution", (category,), score)
        return ClassifierVerdict("none", (), score)
