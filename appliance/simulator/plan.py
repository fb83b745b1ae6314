"""What one chat request will produce: its prompt size, its tokens, why it ends, its KV share."""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec

from appliance.simulator import latency
from appliance.simulator.filler import Filler, json_tokens
from appliance.simulator.protocol import ChatRequest
from appliance.simulator.schema_instance import OBJECT_JSON, SchemaError, check_schema, instance

_encode = msgspec.json.Encoder().encode


class Plan(NamedTuple):
    """What one chat request will produce and hold."""

    prompt: int
    tokens: list[str]
    finish_reason: str
    reservation: int
    is_json: bool


class TooLong(ValueError):
    """The prompt alone fills the model's context."""


_ANY_OBJECT: dict[str, Any] = {}


def make_plan(
    request: ChatRequest, max_model_len: int, kv_cache_tokens: int, filler: Filler
) -> Plan:
    """The answer to `request`: a schema instance for JSON output, else filler text.

    Raises TooLong, or SchemaError for a schema the simulator cannot follow.
    """
    texts: list[str] = []
    chars: list[int] = []
    for message in request.messages:
        parts = message.text_parts()
        texts.extend(parts)
        chars.append(sum(len(part) for part in parts))
    prompt = latency.prompt_tokens(chars)
    if prompt >= max_model_len:
        raise TooLong(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains {prompt} input tokens, which exceeds this limit even without "
            "any output tokens. Please reduce the length of the input prompt."
        )
    max_tokens = request.max_tokens or request.max_completion_tokens or latency.DEFAULT_MAX_TOKENS
    limit = latency.completion_limit(max_tokens, prompt, max_model_len)
    reservation = latency.kv_reservation(prompt, limit, kv_cache_tokens)
    schema = json_target(request)
    if schema is not None:
        check_schema(schema)
        text = _encode(OBJECT_JSON if schema is _ANY_OBJECT else instance(schema)).decode()
        pieces = json_tokens(text, latency.CHARS_PER_TOKEN)
        return Plan(prompt, pieces, "stop", reservation, True)
    draw = filler.draw(texts)
    count = latency.completion_tokens(
        max_tokens,
        limit,
        exact=request.ignore_eos,
        min_tokens=request.min_tokens,
        draw=draw >> 12,
    )
    tokens = filler.tokens(draw, count)
    return Plan(prompt, tokens, latency.finish_reason(count, limit), reservation, False)


def json_target(request: ChatRequest) -> object | None:
    """The schema an answer must follow (`_ANY_OBJECT` for json_object), or None for text."""
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = fmt.json_schema
        return spec.schema if spec is not None and spec.schema is not None else _ANY_OBJECT
    if fmt is not None and fmt.type == "json_object":
        return _ANY_OBJECT
    guided = request.structured_outputs.json if request.structured_outputs is not None else None
    if isinstance(guided, str):
        try:
            guided = msgspec.json.decode(guided)
        except msgspec.DecodeError:
            raise SchemaError("structured_outputs.json is not valid JSON") from None
    return guided
