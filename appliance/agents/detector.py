"""Crisis detection in layers, none of which needs an engine.

1. The phrase lists (`crisis.py`): instant, explainable, high precision; a plain statement of
   intent, plan or abuse is a crisis at once.
2. The classifier (`classifier.py`): embeddings and a trained head read paraphrase, indirect speech
   and the last few turns together; above its threshold a crisis, in its grey zone a caution.
3. Framing cues (`framing.py`): a message that is plainly denied, long past, about someone
   else or a story, an accident or a figure of speech has a classifier crisis capped at caution,
   unless P(crisis) reaches the head's `cue_override`.

`source` says which layer decided, so a reader of the response (and of the logs) knows why.
The Guardrail model, when it can run, judges after this and may only raise the level.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from appliance.agents.classifier import CrisisClassifier
from appliance.agents.crisis import NO_SIGNAL, CrisisSignal, detect
from appliance.agents.framing import Cue, framing
from appliance.errors import EncoderMissing

log = logging.getLogger("appliance.agents.detector")

Layer = Literal["patterns", "classifier"]


@dataclass(frozen=True, slots=True)
class Detection:
    """The layered verdict: the signal, the layer that decided it, and what the layers saw."""

    signal: CrisisSignal
    source: Layer | None  # None when nothing was found
    score: float | None = None  # the classifier's P(crisis), when it ran
    cue: Cue | None = None
    elapsed_s: float = 0.0

    @property
    def is_crisis(self) -> bool:
        return self.signal.is_crisis

    @property
    def level(self) -> str:
        return self.signal.level


class CrisisDetector:
    """Phrase lists, then the classifier when there is one. Without a classifier (not installed)
    the phrase lists alone decide, as before the classifier existed."""

    def __init__(self, classifier: CrisisClassifier | None) -> None:
        self.classifier = classifier

    def detect(self, text: str, context: Sequence[str] = (), *, classify: bool = True) -> Detection:
        """`text`: the person's newest message; `context`: their earlier turns, oldest first;
        `classify=False`: the phrase lists alone, as without a classifier."""
        started = time.perf_counter()
        patterns = detect(text)
        if patterns.is_crisis:
            return Detection(patterns, "patterns", elapsed_s=time.perf_counter() - started)
        cue = framing(text)
        if self.classifier is None or not classify:
            source: Layer | None = "patterns" if patterns.level != "none" else None
            return Detection(patterns, source, cue=cue, elapsed_s=time.perf_counter() - started)
        verdict = self.classifier.classify(text, context)
        found = verdict.signal
        if (
            found.is_crisis
            and cue is not None
            and not self.classifier.head.outweighs_cue(verdict.score)
        ):
            found = CrisisSignal("caution", found.categories)
        signal = patterns.merge(found) if found.level != "none" else patterns
        if signal is NO_SIGNAL or signal.level == "none":
            source = None
        elif found.level == signal.level:
            source = "classifier"
        else:
            source = "patterns"
        return Detection(signal, source, verdict.score, cue, time.perf_counter() - started)

    def snapshot(self) -> dict[str, Any]:
        """For /health/detailed: whether the classifier is loaded, how long that took, how many
        adapted encoders it reads with and how their matrices are held, its thresholds (by kind,
        where they differ)."""
        if self.classifier is None:
            return {"loaded": False, "layers": ["patterns"]}
        head = self.classifier.head
        return {
            "loaded": True,
            "layers": ["patterns", "classifier"],
            "load_s": round(self.classifier.load_s, 3),
            "members": self.classifier.encoder.members,
            "weights": self.classifier.encoder.weights,
            "crisis_threshold": head.crisis_threshold,
            "caution_threshold": head.caution_threshold,
            "cue_override": head.cue_override,
            "category_thresholds": (
                None
                if head.category_thresholds is None
                else dict(zip(head.categories, head.category_thresholds, strict=True))
            ),
        }


def default_detector() -> CrisisDetector:
    """The phrase lists and the packaged classifier. Without the encoder package the phrase lists
    work alone, and the error log and /health/detailed say so."""
    try:
        classifier = CrisisClassifier.load()
    except EncoderMissing as exc:
        log.error("crisis classifier not loaded, phrase lists only: %s", exc.message)
        return CrisisDetector(None)
    log.info("crisis classifier loaded in %.2f s", classifier.load_s)
    return CrisisDetector(classifier)
