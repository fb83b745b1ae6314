"""The engine's own reason for refusing a request, as the gateway logs it."""

from __future__ import annotations

import json

from appliance.gateway.transport import engine_error, one_line


def engine_message(body: object) -> str:
    return one_line(engine_error(json.dumps(body).encode()).reason)


def test_vllm_and_openai_error_shapes():
    vllm = {"error": {"message": "This model's maximum context length is 2048 tokens."}}
    assert engine_message(vllm) == "This model's maximum context length is 2048 tokens."
    assert engine_message({"message": "bad\n  schema", "type": "BadRequestError"}) == "bad schema"
    assert engine_message({"error": "plain"}) == "plain"
    assert one_line(engine_error(b"").reason) == "no message"


def test_a_body_that_is_not_json_is_its_text():
    assert one_line(engine_error(b"  upstream timed out\n").reason) == "upstream timed out"


def test_long_messages_are_cut():
    text = engine_message({"message": "x" * 2000})
    assert len(text) == 500 and text.endswith("...")
