"""Runs the layered crisis detection off the event loop, on one thread, remembering recent verdicts.

The classifier is milliseconds of numpy per message. Under overload every refused conversational
request still gets a crisis check (a person in crisis gets resources even when shed), so unbounded
worker threads would compete with the event loop for the same cores exactly when it is busiest.
One thread, reading one message at a time (its encoder's second member on a thread of its own),
bounds that cost; a small memory of verdicts, keyed by a digest of the texts (never the
texts themselves), answers a client's retries of the same message at once.

A verdict that does not come within `wait_s` (the thread stuck or far behind), or a classifier that
fails (onnxruntime refusing a session, say), is replaced by the phrase lists' alone, run on the
caller's side in microseconds: a plain statement of crisis still gets its resources, and no request
waits on the classifier for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from appliance.agents.cache import cache_key
from appliance.agents.detector import CrisisDetector, Detection

REMEMBERED = 1024
# Milliseconds per message, a quarter of a second for the first (its session is built then):
# seconds more mean the thread is stuck or far behind.
WAIT_S = 5.0

log = logging.getLogger("appliance.agents.detect_worker")


class DetectWorker:
    def __init__(
        self, detector: CrisisDetector, remembered: int = REMEMBERED, wait_s: float = WAIT_S
    ) -> None:
        self.detector = detector
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crisis-detect")
        self._recent: OrderedDict[str, Detection] = OrderedDict()
        self._remembered = remembered

    async def detect(self, text: str, context: Sequence[str]) -> Detection:
        """`context`: the person's earlier messages, oldest first."""
        key = cache_key("crisis-detect", list(context), text)
        found = self._recent.get(key)
        if found is not None:
            self._recent.move_to_end(key)
            return found
        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(self._pool, self.detector.detect, text, tuple(context))
        try:
            detection = await asyncio.wait_for(pending, self.wait_s)
        except TimeoutError:
            log.warning(
                "crisis classifier gave no verdict within %.1f s: the phrase lists decided alone",
                self.wait_s,
            )
            return self.detector.detect(text, classify=False)
        except Exception as exc:  # a fault in the classifier must not cost the phrase lists
            # The type only: an error's message could quote what it was reading.
            log.error(
                "crisis classifier failed (%s): the phrase lists decided alone",
                type(exc).__name__,
            )
            return self.detector.detect(text, classify=False)
        self._recent[key] = detection
        if len(self._recent) > self._remembered:
            self._recent.popitem(last=False)
        return detection
