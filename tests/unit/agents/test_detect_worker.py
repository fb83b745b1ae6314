"""The detect worker: verdicts off the event loop, remembered, and never waited on for ever."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import pytest

from appliance.agents.classifier import ClassifierVerdict, CrisisClassifier
from appliance.agents.detect_worker import DetectWorker
from appliance.agents.detector import CrisisDetector

EVERYDAY = "can you help me plan my week?"
PLAIN = "I want to kill myself"


@pytest.fixture
def stuck(monkeypatch: pytest.MonkeyPatch) -> tuple[CrisisDetector, threading.Event]:
    """A detector whose classifier hangs until the event is set (at most 10 s)."""
    classifier = CrisisClassifier.load()
    release = threading.Event()
    real = classifier.classify

    def hanging(text: str, context: Sequence[str] = ()) -> ClassifierVerdict:
        release.wait(10)
        return real(text, context)

    monkeypatch.setattr(classifier, "classify", hanging)
    return CrisisDetector(classifier), release


async def test_a_stuck_classifier_leaves_the_phrase_lists_to_decide(
    stuck: tuple[CrisisDetector, threading.Event], caplog: pytest.LogCaptureFixture
) -> None:
    detector, release = stuck
    worker = DetectWorker(detector, wait_s=0.2)
    try:
        worker_log = "appliance.agents.detect_worker"
        with caplog.at_level(logging.WARNING, logger=worker_log):
            everyday = await worker.detect(EVERYDAY, [])
            # The one thread is still held by the first message: this waits its turn, then the
            # phrase lists answer on their own.
            plain = await worker.detect(PLAIN, [])
        assert (everyday.level, everyday.source, everyday.score) == ("none", None, None)
        assert plain.is_crisis and plain.source == "patterns"
        warnings = [r.getMessage() for r in caplog.records if r.name == worker_log]
        assert len(warnings) == 2 and "phrase lists decided alone" in warnings[0]
        assert not any(EVERYDAY in w or PLAIN in w for w in warnings)
    finally:
        release.set()
    # Once the thread is free the classifier reads again; the stand-in verdict was not kept.
    worker.wait_s = 30.0  # the first verdict builds the session: no deadline to race here
    again = await worker.detect(EVERYDAY, [])
    assert again.score is not None and again.level == "none"


async def test_verdicts_are_remembered_for_retries(
    stuck: tuple[CrisisDetector, threading.Event],
) -> None:
    detector, release = stuck
    release.set()
    worker = DetectWorker(detector, wait_s=5.0)
    first = await worker.detect(EVERYDAY, ["earlier"])
    assert first.score is not None
    assert await worker.detect(EVERYDAY, ["earlier"]) is first
    assert await worker.detect(EVERYDAY, []) is not first  # other context, another verdict


async def test_a_failing_classifier_leaves_the_phrase_lists_to_decide(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    classifier = CrisisClassifier.load()
    real = classifier.classify
    calls: list[str] = []

    def failing(text: str, context: Sequence[str] = ()) -> ClassifierVerdict:
        calls.append(text)
        raise RuntimeError(f"session refused while reading {text!r}")

    monkeypatch.setattr(classifier, "classify", failing)
    worker = DetectWorker(CrisisDetector(classifier), wait_s=5.0)
    indirect = "soon I won't be anyone's problem"
    worker_log = "appliance.agents.detect_worker"
    with caplog.at_level(logging.ERROR, logger=worker_log):
        everyday = await worker.detect(EVERYDAY, [])
        unread = await worker.detect(indirect, ["earlier"])
        plain = await worker.detect(PLAIN, [])
    assert calls == [EVERYDAY, indirect]  # the plain statement never reached the classifier
    assert (everyday.level, everyday.source, everyday.score) == ("none", None, None)
    assert unread.score is None  # the phrase lists' verdict, whatever they make of it
    assert plain.is_crisis and plain.source == "patterns"
    errors = [r.getMessage() for r in caplog.records if r.name == worker_log]
    assert len(errors) == 2 and all("RuntimeError" in e for e in errors)
    assert not any(EVERYDAY in e or "anyone" in e for e in errors)
    # The stand-in verdict is not kept: once the classifier reads again, it is asked again.
    monkeypatch.setattr(classifier, "classify", real)
    worker.wait_s = 30.0
    again = await worker.detect(EVERYDAY, [])
    assert again.score is not None and again.level == "none"
