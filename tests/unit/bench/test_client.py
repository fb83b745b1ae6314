"""The streaming client's timing and error handling, over a mock transport and a stepped clock."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2
import pytest

from appliance.bench.client import StreamClient, Target
from appliance.bench.workloads import BenchRequest
from appliance.load.priority import PRIORITY_HEADER

REQ = BenchRequest("kai", ({"role": "user", "content": "(synthetic benchmark text) tea"},), 3)


def stepping_clock(step: float = 0.1) -> Callable[[], float]:
    now = [-step]

    def clock() -> float:
        now[0] += step
        return round(now[0], 6)

    return clock


def sse(*events: dict | str) -> bytes:
    return b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )


def chunk(text: str | None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


STREAM = sse(
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
    chunk("Hel"),
    chunk("lo"),
    chunk(" x"),
    {"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}},
    "[DONE]",
)


def client_for(handler: Callable[[httpx2.Request], httpx2.Response], **kw: object) -> StreamClient:
    return StreamClient(transport=httpx2.MockTransport(handler), **kw)  # type: ignore[arg-type]


def target(scale: float = 1.0) -> Target:
    return Target(
        agent="kai",
        base_url="http://appliance.test/v1",
        model="kai",
        api_key="k1",
        time_scale=scale,
        reports_as="llama-3.1-70b-instruct",
    )


async def test_timings_follow_text_chunks_and_tokens_come_from_usage() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=STREAM, headers={"content-type": "text/event-stream"})

    async with client_for(handler, clock=stepping_clock()) as client:
        s = await client.send(target(), REQ, phase=2, seq=7, t0=0.0)
    # clock: start 0.0; role chunk 0.1 (no text); text 0.2, 0.3, 0.4; usage 0.5; end 0.6
    assert s.ok and s.error is None
    assert s.ttft_s == pytest.approx(0.2)
    assert s.itl_s == pytest.approx((0.1, 0.1))
    assert s.e2el_s == pytest.approx(0.6)
    assert (s.prompt_tokens, s.completion_tokens) == (12, 3)
    assert (s.phase, s.seq, s.agent, s.model) == (2, 7, "kai", "llama-3.1-70b-instruct")

    request = seen[0]
    assert str(request.url) == "http://appliance.test/v1/chat/completions"
    assert request.headers[PRIORITY_HEADER] == "benchmark"
    assert request.headers["authorization"] == "Bearer k1"
    body = json.loads(request.content)
    assert body["model"] == "kai" and body["max_tokens"] == 3 and body["ignore_eos"] is True
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


async def test_times_are_divided_by_the_time_scale() -> None:
    client = client_for(lambda r: httpx2.Response(200, content=STREAM), clock=stepping_clock())
    async with client:
        s = await client.send(target(scale=0.1), REQ, phase=0, seq=0, t0=-1.0)
    assert s.ttft_s == pytest.approx(2.0)
    assert s.e2el_s == pytest.approx(6.0)
    assert s.start_s == pytest.approx(10.0)


async def test_http_errors_keep_status_and_type_never_the_message() -> None:
    body = {
        "error": {
            "message": "user said something private",
            "type": "overloaded_error",
            "code": "overloaded",
        }
    }
    client = client_for(lambda r: httpx2.Response(503, json=body))
    async with client:
        s = await client.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert not s.ok and s.error == "http_503 overloaded_error"
    assert s.completion_tokens == 0


async def test_non_json_error_bodies_and_free_text_errors_are_dropped() -> None:
    async with client_for(lambda r: httpx2.Response(502, content=b"<html>oops</html>")) as c:
        assert (await c.send(target(), REQ, phase=0, seq=0, t0=0.0)).error == "http_502"
    async with client_for(lambda r: httpx2.Response(400, json={"error": "free text"})) as c:
        assert (await c.send(target(), REQ, phase=0, seq=0, t0=0.0)).error == "http_400 error"


async def test_errors_inside_the_stream_and_empty_streams_fail_the_sample() -> None:
    broken = sse(chunk("a"), {"error": {"message": "x", "type": "engine_unavailable"}})
    async with client_for(lambda r: httpx2.Response(200, content=broken)) as c:
        s = await c.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert s.error == "stream_error engine_unavailable"
    async with client_for(lambda r: httpx2.Response(200, content=sse("[DONE]"))) as c:
        assert (await c.send(target(), REQ, phase=0, seq=0, t0=0.0)).error == "empty_stream"
    async with client_for(lambda r: httpx2.Response(200, content=b"data: {nope\n\n")) as c:
        assert (await c.send(target(), REQ, phase=0, seq=0, t0=0.0)).error == "bad_chunk"


async def test_without_usage_the_text_chunks_are_counted() -> None:
    async with client_for(lambda r: httpx2.Response(200, content=sse(chunk("a"), chunk("b")))) as c:
        s = await c.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert s.ok and s.completion_tokens == 2 and s.prompt_tokens == 0


@pytest.mark.parametrize(
    ("exc", "word"),
    [
        (httpx2.ConnectError("refused"), "connect_error"),
        (httpx2.ReadTimeout("slow"), "timeout"),
        (httpx2.RemoteProtocolError("bad"), "remote_protocol_error"),
    ],
)
async def test_transport_failures_become_short_error_names(exc: Exception, word: str) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise exc

    async with client_for(handler) as c:
        s = await c.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert not s.ok and s.error == word


async def test_direct_engine_targets_get_a_synthetic_system_prompt() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=STREAM)

    direct = Target(agent="kai", base_url="http://engine.test/v1", model="m", system_words=5)
    async with client_for(handler) as c:
        await c.send(direct, REQ, phase=0, seq=0, t0=0.0)
    first = json.loads(seen[0].content)["messages"][0]
    assert first["role"] == "system" and first["content"].startswith("(synthetic system prompt)")
    assert "authorization" not in seen[0].headers  # no key given, none sent


async def test_the_answering_model_and_fallbacks_come_from_the_appliance_headers() -> None:
    headers = {"x-appliance-model": "llama-3.1-8b-instruct", "x-appliance-fallback": "true"}
    async with client_for(lambda r: httpx2.Response(200, content=STREAM, headers=headers)) as c:
        s = await c.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert s.ok and s.fallback and s.model == "llama-3.1-8b-instruct"
    plain = {"x-appliance-model": "llama-3.1-70b-instruct", "x-appliance-fallback": "false"}
    async with client_for(lambda r: httpx2.Response(200, content=STREAM, headers=plain)) as c:
        s = await c.send(target(), REQ, phase=0, seq=0, t0=0.0)
    assert not s.fallback and s.model == "llama-3.1-70b-instruct"
