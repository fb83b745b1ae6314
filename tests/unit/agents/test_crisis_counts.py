"""Crisis-protocol replies are counted by what found the crisis, and nothing else is kept."""

from __future__ import annotations

import msgspec

from appliance.agents.orchestrator import Orchestrator
from appliance.api.agents import answer_crisis
from appliance.api.chat import ChatHead
from tests.unit.agents.fakes import FakeGateway, config


async def test_each_crisis_reply_is_counted_once_by_its_source() -> None:
    cfg = config()
    orchestrator = Orchestrator(cfg, FakeGateway(cfg))
    assert orchestrator.crisis_replies == {}
    sent: list[object] = []

    async def send(event: object) -> None:
        sent.append(event)

    for text in ("I want to kill myself", "What a lovely day"):
        raw = msgspec.json.encode({"model": "kai", "messages": [{"role": "user", "content": text}]})
        await answer_crisis(orchestrator, msgspec.json.decode(raw, type=ChatHead), raw, send)
    orchestrator.crisis_notice(["suicide"], "guardrail", None)
    assert orchestrator.crisis_replies == {"crisis_detector": 1, "guardrail": 1}
    assert sent  # the crisis was answered
