"""The crisis answer on /v1/chat/completions for `model: "kai"`, without a server."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from appliance.agents.orchestrator import Orchestrator
from appliance.api.agents import answer_crisis, last_user_text
from appliance.api.chat import ChatHead
from tests.unit.agents.fakes import FakeGateway, config


@pytest.fixture
def orchestrator() -> Orchestrator:
    cfg = config()
    return Orchestrator(cfg, FakeGateway(cfg))


def head(body: dict[str, Any]) -> tuple[ChatHead, bytes]:
    raw = msgspec.json.encode(body)
    return msgspec.json.decode(raw, type=ChatHead), raw


class Sent:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    async def __call__(self, event: Any) -> None:
        self.events.append(event)

    @property
    def body(self) -> bytes:
        return b"".join(e.get("body", b"") for e in self.events)

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.events[0]["headers"])


def test_the_newest_user_message_is_the_one_checked() -> None:
    parsed, _ = head(
        {
            "model": "kai",
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {"role": "user", "content": [{"type": "text", "text": "second"}]},
            ],
        }
    )
    assert last_user_text(parsed.messages) == "second"
    only_system, _ = head({"model": "kai", "messages": [{"role": "system", "content": "x"}]})
    assert last_user_text(only_system.messages) is None


async def test_no_crisis_sends_nothing(orchestrator: Orchestrator) -> None:
    parsed, raw = head({"model": "kai", "messages": [{"role": "user", "content": "hello"}]})
    sent = Sent()
    assert not await answer_crisis(orchestrator, parsed, raw, sent)
    assert sent.events == []


async def test_a_crisis_gets_a_chat_completion_with_resources(orchestrator: Orchestrator) -> None:
    parsed, raw = head(
        {"model": "kai", "messages": [{"role": "user", "content": "I want to kill myself"}]}
    )
    sent = Sent()
    assert await answer_crisis(orchestrator, parsed, raw, sent)
    assert sent.headers[b"x-appliance-fallback-step"] == b"crisis_protocol"
    completion = ChatCompletion.model_validate_json(sent.body)
    assert "988" in (completion.choices[0].message.content or "")


async def test_a_streamed_crisis_is_server_sent_events(orchestrator: Orchestrator) -> None:
    parsed, raw = head(
        {
            "model": "kai",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "I want to end my life"}],
        }
    )
    sent = Sent()
    assert await answer_crisis(orchestrator, parsed, raw, sent)
    assert sent.headers[b"content-type"] == b"text/event-stream"
    events = [e.removeprefix(b"data: ") for e in sent.body.split(b"\n\n") if e]
    assert events[-1] == b"[DONE]"
    chunks = [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "988" in text
    assert chunks[-1].usage is not None and chunks[-1].choices == []
