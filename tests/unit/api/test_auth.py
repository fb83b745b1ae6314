"""API keys and per-key rate limits: the guard and its ASGI middleware."""

from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.api.auth import AuthMiddleware, Guard, api_keys, is_open, presented_key
from appliance.config import load_config
from appliance.errors import RateLimited, Unauthorized

SHIPPED = Path(__file__).resolve().parents[3] / "models.toml"
KEYS = ("key-one", "key-two")


def bearer(key: str) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"x"), (b"authorization", f"Bearer {key}".encode())]


def test_no_key_configured_lets_everything_through() -> None:
    guard = Guard(())
    assert guard.refuse([]) is None
    assert guard.refuse(bearer("anything")) is None


def test_a_missing_or_wrong_key_is_refused_with_401() -> None:
    guard = Guard(KEYS)
    missing = guard.refuse([(b"host", b"x")])
    assert isinstance(missing, Unauthorized) and "required" in missing.message
    wrong = guard.refuse(bearer("key-three"))
    assert isinstance(wrong, Unauthorized) and "not valid" in wrong.message
    assert isinstance(guard.refuse([(b"authorization", b"Basic a2V5LW9uZQ==")]), Unauthorized)


def test_keys_are_accepted_as_bearer_or_x_api_key() -> None:
    guard = Guard(KEYS)
    assert guard.refuse(bearer("key-two")) is None
    assert guard.refuse([(b"authorization", b"bearer key-one")]) is None
    assert guard.refuse([(b"x-api-key", b"key-one")]) is None
    assert presented_key([(b"authorization", b"Bearer  spaced ")]) == b"spaced"


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    guard = Guard(KEYS)
    assert guard.refuse(bearer("key-one")) is None
    # The first key matched, and the second was still compared: the time says nothing.
    assert [b for _, b in calls] == [b"key-one", b"key-two"]


def test_each_key_has_its_own_token_bucket() -> None:
    now = [0.0]
    guard = Guard(KEYS, rate_limit_rps=2.0, rate_limit_burst=3, clock=lambda: now[0])
    assert [guard.refuse(bearer("key-one")) for _ in range(3)] == [None, None, None]
    limited = guard.refuse(bearer("key-one"))
    assert isinstance(limited, RateLimited)
    assert limited.retry_after == pytest.approx(0.5)
    assert guard.refuse(bearer("key-two")) is None  # another key: another bucket
    now[0] = 0.5
    assert guard.refuse(bearer("key-one")) is None
    assert isinstance(guard.refuse(bearer("key-one")), RateLimited)


def test_without_keys_callers_share_one_bucket() -> None:
    guard = Guard((), rate_limit_rps=1.0, rate_limit_burst=1, clock=lambda: 0.0)
    assert guard.refuse([]) is None
    assert isinstance(guard.refuse(bearer("whatever")), RateLimited)


def test_only_the_probes_are_open() -> None:
    assert is_open("/health") and is_open("/health/") and is_open("/health/ready")
    assert not is_open("/health/detailed") and not is_open("/health/anything")
    assert not is_open("/healthz") and not is_open("/v1/chat/completions")
    assert not is_open("/metrics") and not is_open("/admin/breakers")
    assert is_open("/ui") and is_open("/ui/static/app.js") and is_open("/ui/session")
    assert not is_open("/admin/overview") and not is_open("/ui/anything") and not is_open("/uix")


class Downstream:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1


async def call(middleware: AuthMiddleware, path: str, headers: list[tuple[bytes, bytes]]):
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "path": path, "method": "POST", "headers": headers}
    await middleware(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_the_middleware_refuses_with_an_openai_shaped_body() -> None:
    app = Downstream()
    middleware = AuthMiddleware(app, Guard(KEYS))  # type: ignore[arg-type]
    sent = await call(middleware, "/v1/chat/completions", [])
    assert app.calls == 0
    start, body = sent
    assert start["status"] == 401
    headers = dict(start["headers"])
    assert headers[b"www-authenticate"].startswith(b"Bearer")
    assert json.loads(body["body"]) == {
        "error": {
            "message": "An API key is required: send `Authorization: Bearer <key>`.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert await call(middleware, "/health", []) == [] and app.calls == 1
    assert await call(middleware, "/v1/chat/completions", bearer("key-two")) == []
    assert app.calls == 2


async def test_the_middleware_answers_429_with_retry_after() -> None:
    app = Downstream()
    guard = Guard(KEYS, rate_limit_rps=0.25, rate_limit_burst=1, clock=lambda: 0.0)
    middleware = AuthMiddleware(app, guard)  # type: ignore[arg-type]
    assert await call(middleware, "/v1/models", bearer("key-one")) == []
    start, body = await call(middleware, "/v1/models", bearer("key-one"))
    assert start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"4"
    assert json.loads(body["body"])["error"]["type"] == "rate_limit_error"


def test_keys_come_from_the_file_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(SHIPPED, env={})
    config = msgspec.structs.replace(
        config, security=msgspec.structs.replace(config.security, api_keys=("from-file",))
    )
    monkeypatch.setenv(config.security.api_keys_env, " a , b,,")
    assert api_keys(config) == ("from-file", "a", "b")
    monkeypatch.delenv(config.security.api_keys_env)
    assert api_keys(config) == ("from-file",)
