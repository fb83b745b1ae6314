"""The one decoding layer: nesting cap, and errors that say what was expected and where."""

from __future__ import annotations

import msgspec
import pytest

from appliance.api.bodies import MAX_DEPTH, check_depth, decode, nesting_depth
from appliance.api.chat import ChatHead, engine_error_body
from appliance.errors import BadRequest


def test_nesting_depth_ignores_brackets_in_strings() -> None:
    assert nesting_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert nesting_depth(b'{"a": "\\"[[[["}') == 1
    assert nesting_depth(b"[" * 1000 + b"]" * 1000) == 1000


def test_deep_bodies_are_refused_before_decoding() -> None:
    check_depth(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    with pytest.raises(BadRequest, match="nests 65 levels deep; at most 64") as caught:
        decode(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    assert caught.value.code == "too_deeply_nested"


def test_many_shallow_brackets_pass() -> None:
    body = b'{"messages": [' + b",".join([b'{"role": "user"}'] * 500) + b"]}"
    assert len(decode(body)["messages"]) == 500


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "The request body is empty: expected a JSON object."),
        (b'{"a": 1', "expecting ',' delimiter at line 1, column 8 (byte 7)"),
        (b'{"a": }', "expecting value at line 1, column 7 (byte 6)"),
        (b"\xff", "not valid UTF-8 JSON"),
    ],
)
def test_syntax_errors_say_what_and_where(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode(body)
    assert message in caught.value.message
    assert "truncated" not in caught.value.message


def test_validation_errors_name_the_field() -> None:
    decoder = msgspec.json.Decoder(ChatHead).decode
    with pytest.raises(BadRequest) as caught:
        decode(b'{"model": "kai", "messages": [{"role": "user", "content": 5}]}', decoder=decoder)
    assert caught.value.param == "messages[0].content"
    assert caught.value.message.startswith("Invalid request body at `messages[0].content`: ")


@pytest.mark.parametrize(
    ("status", "body", "message", "code", "param"),
    [
        (
            400,
            b'{"object": "error", "message": "too long", "type": "BadRequestError", "param": null, "code": 400}',
            "The engine refused the request: too long",
            "400",
            None,
        ),
        (
            400,
            b'{"error": {"message": "bad n", "type": "x", "param": "n", "code": 400}}',
            "The engine refused the request: bad n",
            "400",
            "n",
        ),
        (422, b"plain text", "The engine refused the request: plain text", "engine_http_422", None),
        (404, b"", "The engine answered 404.", "engine_http_404", None),
    ],
)
def test_engine_errors_come_back_in_the_openai_shape(
    status: int, body: bytes, message: str, code: str, param: str | None
) -> None:
    error = msgspec.json.decode(engine_error_body(status, body))["error"]
    assert error == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }
