"""The engine's own reason for refusing a request, as the gateway logs it."""

from __future__ import annotations

from appliance.gateway.transport import engine_message


def test_vllm_and_openai_error_shapes():
    vllm = {"error": {"message": "This model's maximum context length is 2048 tokens."}}
    assert engine_message(vllm) == "This model's maximum context length is 2048 tokens."
    assert engine_message({"message": "bad\n  schema", "type": "BadRequestError"}) == "bad schema"
    assert engine_message({"error": "plain"}) == "plain"
    assert engine_message(None) == "no message"


def test_long_messages_are_cut():
    text = engine_message({"message": "x" * 2000})
    assert len(text) == 500 and text.endswith("...")
