"""The OpenAPI document as the API answers."""

from __future__ import annotations

from appliance.api.openapi import ERROR_REF, describe


def litestar_like() -> dict:  # type: ignore[type-arg]
    validation = {
        "description": "Bad request syntax or unsupported method",
        "content": {"application/json": {"schema": {"required": ["detail", "status_code"]}}},
    }
    return {
        "paths": {
            "/v1/converse": {"post": {"responses": {"200": {}, "400": validation}}},
            "/benchmarks/{run_id}/report": {
                "get": {
                    "responses": {
                        "200": {"content": {"application/json": {"schema": {"type": "string"}}}}
                    }
                }
            },
            "/health": {"get": {"responses": {"200": {"description": "ok"}}}},
        },
        "components": {"schemas": {}},
    }


def test_errors_are_declared_in_the_openai_shape() -> None:
    doc = describe(litestar_like())
    responses = doc["paths"]["/v1/converse"]["post"]["responses"]
    assert responses["400"]["content"]["application/json"]["schema"] == ERROR_REF
    assert responses["default"]["content"]["application/json"]["schema"] == ERROR_REF
    error = doc["components"]["schemas"]["OpenAIError"]["properties"]["error"]
    assert error["required"] == ["message", "type", "param", "code"]


def test_the_report_is_an_object_and_health_declares_its_503() -> None:
    doc = describe(litestar_like())
    report = doc["paths"]["/benchmarks/{run_id}/report"]["get"]["responses"]["200"]["content"]
    assert report["application/json"]["schema"] == {"type": "object"}
    assert set(report) == {"application/json", "text/markdown", "text/html"}
    assert "503" in doc["paths"]["/health"]["get"]["responses"]


def test_the_chat_passthrough_is_declared() -> None:
    doc = describe(litestar_like())
    chat = doc["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatHead"}
    assert "ChatHead" in doc["components"]["schemas"]
    assert set(chat["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
