"""OpenAI-compatible chat through the appliance to the real engine, streamed and not."""

from __future__ import annotations

import openai

from tests.vllm.conftest import MODEL, VllmAppliance


def client(appliance: VllmAppliance) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{appliance.base_url}/v1", api_key="none", max_retries=0)


def test_a_chat_completion_with_usage(appliance: VllmAppliance):
    reply = client(appliance).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=16,
        temperature=0.0,
    )
    assert reply.model == MODEL
    assert reply.choices[0].message.role == "assistant"
    assert isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert 0 < reply.usage.completion_tokens <= 16
    assert reply.usage.prompt_tokens > 0


def test_a_streamed_chat_ends_with_the_usage_chunk(appliance: VllmAppliance):
    stream = client(appliance).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert 0 < usage.completion_tokens <= 16 and usage.prompt_tokens > 0
    assert text
    assert [c for c in chunks[:-1] if c.usage is not None] == []
