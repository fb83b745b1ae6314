"""The limits on a request that its struct cannot say: they come from the safety config.

The request structs check shapes and roles on the way in; these check emptiness and sizes, so an
oversized history is refused with a 400 naming the field before any model or detector reads it.
"""

from __future__ import annotations

from collections.abc import Sequence

from appliance.agents.schemas import AnalysisRequest, Turn
from appliance.config.schema import SafetyConfig
from appliance.errors import BadRequest


class RequestChecks:
    """Refuses text that is empty or too long and histories with too many turns or items."""

    def __init__(self, safety: SafetyConfig) -> None:
        self.max_chars = safety.max_message_chars
        self.max_turns = safety.max_history_turns
        self.max_items = safety.max_analysis_items

    def text(self, field: str, text: str) -> None:
        """A message someone must have written: not blank, within the length limit."""
        if not text.strip():
            raise BadRequest(f"`{field}` is empty.")
        self.length(field, text)

    def length(self, field: str, text: str) -> None:
        """Within the length limit (empty is allowed)."""
        limit = self.max_chars
        if len(text) > limit:
            raise BadRequest(f"`{field}` is {len(text)} characters long; the limit is {limit}.")

    def history(self, turns: Sequence[Turn], *, field: str = "history") -> None:
        """Few enough turns, each within the length limit."""
        limit = self.max_turns
        if len(turns) > limit:
            raise BadRequest(
                f"`{field}` has {len(turns)} turns; the limit is {limit}. "
                "Send the most recent ones."
            )
        for i, turn in enumerate(turns):
            self.length(f"{field}[{i}].content", turn.content)

    def analysis(self, request: AnalysisRequest) -> None:
        """Something to analyse, not too much of it, each text within the length limit."""
        items = len(request.messages) + len(request.check_ins)
        if items == 0:
            raise BadRequest("Send at least one item in `messages` or `check_ins`.")
        if items > self.max_items:
            raise BadRequest(
                f"Send at most {self.max_items} messages and check-ins together (got {items})."
            )
        for i, turn in enumerate(request.messages):
            self.length(f"messages[{i}].content", turn.content)
        for i, check_in in enumerate(request.check_ins):
            if check_in.note:
                self.length(f"check_ins[{i}].note", check_in.note)
