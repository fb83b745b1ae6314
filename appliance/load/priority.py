"""Priority classes: who is served first and who is shed first under load."""

from __future__ import annotations

from enum import IntEnum

# Header a caller may send to lower (never raise) the class of its request; benchmarks send it.
PRIORITY_HEADER = "x-appliance-priority"


class Priority(IntEnum):
    """Lower value = more important. Lower classes are shed first."""

    GUARDRAIL = 0
    INTERACTIVE = 1
    ANALYSIS = 2
    BENCHMARK = 3

    @classmethod
    def for_agent(cls, agent: str | None) -> Priority:
        return _AGENT_PRIORITY.get(agent or "", cls.INTERACTIVE)

    @classmethod
    def parse(cls, value: str | None, default: Priority) -> Priority:
        """A header value such as `benchmark`; only lowers `default`, unknown values ignored."""
        if not value:
            return default
        try:
            asked = cls[value.strip().upper()]
        except KeyError:
            return default
        return max(asked, default)


_AGENT_PRIORITY = {
    "guardrail": Priority.GUARDRAIL,
    "kai": Priority.INTERACTIVE,
    "genetic": Priority.ANALYSIS,
    "wellness": Priority.ANALYSIS,
}
