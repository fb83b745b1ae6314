"""The OpenAPI document as the API really answers, served at `/schema/openapi.json`.

Litestar describes the routes it builds, with its own error shape and without the raw ASGI
passthrough. `describe` corrects that in one place: every error is declared in the OpenAI shape
(what `api/errors.py` sends), `/v1/chat/completions` is declared with its body and both answers
(JSON, or server-sent events when streaming), and the few routes whose bodies Litestar cannot see
(reports by format, Prometheus text, health's 503) say what they send.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec
from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin

ERROR_REF = {"$ref": "#/components/schemas/OpenAIError"}
_NULLABLE_STRING = {"oneOf": [{"type": "string"}, {"type": "null"}]}
OPENAI_ERROR = {
    "type": "object",
    "description": "Every error the appliance answers, in the OpenAI shape.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": _NULLABLE_STRING,
                "code": _NULLABLE_STRING,
            },
        }
    },
}
_ERROR_RESPONSE = {
    "description": "An error, in the OpenAI shape",
    "content": {"application/json": {"schema": ERROR_REF}},
}


def describe(doc: dict[str, Any]) -> dict[str, Any]:
    """A corrected copy of Litestar's document."""
    doc = copy.deepcopy(doc)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas["OpenAIError"] = OPENAI_ERROR
    paths: dict[str, Any] = doc.setdefault("paths", {})
    paths["/v1/chat/completions"] = _chat_completions(schemas)
    for path, item in paths.items():
        for method, operation in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                _errors_in_openai_shape(operation)
                _route_specifics(path, operation)
    return doc


def _errors_in_openai_shape(operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in list(responses):
        if status != "default" and int(status) >= 400:
            responses[status] = copy.deepcopy(_ERROR_RESPONSE)
    # 401, 404, 405, 409, 429, 503 ...: whatever status, an error body has this shape.
    responses["default"] = copy.deepcopy(_ERROR_RESPONSE)


def _route_specifics(path: str, operation: dict[str, Any]) -> None:
    responses = operation["responses"]
    if path == "/benchmarks/{run_id}/report":
        responses["200"] = {
            "description": "The report: a JSON object, Markdown or HTML, by `format`",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/markdown": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        }
    elif path == "/metrics":
        responses["200"] = {
            "description": "Prometheus text exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    elif path in ("/health", "/health/detailed"):
        ok = responses.get("200", {})
        responses["503"] = {**copy.deepcopy(ok), "description": "Unhealthy: the same body"}


def _chat_completions(schemas: dict[str, Any]) -> dict[str, Any]:
    from appliance.api.chat import ChatHead

    (body,), components = msgspec.json.schema_components(
        [ChatHead], ref_template="#/components/schemas/{name}"
    )
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    return {
        "post": {
            "tags": ["openai"],
            "summary": "Chat completion (OpenAI-compatible), with the agents' fallbacks",
            "description": (
                "`model` is an agent (kai, guardrail, genetic, wellness), `default`, or a served "
                "model. Fields not listed pass through to the engine unchanged. With "
                "`stream: true` the answer is server-sent events."
            ),
            "operationId": "ChatCompletions",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": body}},
            },
            "responses": {
                "200": {
                    "description": "A chat completion, or its chunks as server-sent events",
                    "content": {
                        "application/json": {"schema": _CHAT_COMPLETION},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                }
            },
        }
    }


_CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "choices"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array", "items": {"type": "object"}},
        "usage": {"oneOf": [{"type": "object"}, {"type": "null"}]},
    },
}


class DescribedJson(JsonRenderPlugin):
    """`/schema/openapi.json`, corrected by `describe` (computed once)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple[int, bytes] | None = None

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        if self._cache is None or self._cache[0] != id(openapi_schema):
            self._cache = (id(openapi_schema), super().render(request, describe(openapi_schema)))
        return self._cache[1]
