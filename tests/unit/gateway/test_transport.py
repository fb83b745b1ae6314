"""The one engine transport: agents' completions over the passthrough's pool, decoded into the
appliance's structs; error statuses and Retry-After read in one place. Real HTTP on loopback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pytest

from appliance.config.schema import Config, LLMSettings
from appliance.engines.base import Endpoint
from appliance.errors import (
    ApplianceError,
    EngineConnectionError,
    EngineReadTimeout,
    EngineRefused,
    EngineTimeout,
    EngineUnavailable,
    RetryableStatus,
)
from appliance.gateway.breaker import BreakerState
from appliance.gateway.client import EngineClient, engine_clients
from appliance.gateway.completion import ChatCompletion, decode_completion, request_completion
from appliance.gateway.gateway import Gateway
from appliance.gateway.transport import retry_after
from appliance.load.priority import Priority
from tests.unit.gateway.test_gateway_admission import closed_port, config

ANSWER = (
    b'{"id":"c1","object":"chat.completion","created":1,"model":"m","system_fingerprint":null,'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"hello","tool_calls":[]},'
    b'"logprobs":null,"finish_reason":"stop","stop_reason":null}],'
    b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7},"prompt_logprobs":null}'
)
VLLM_400 = (
    b'{"object":"error","message":"This model\'s maximum context length is 2048 tokens.",'
    b'"type":"BadRequestError","param":null,"code":400}'
)


@dataclass
class Reply:
    status: int = 200
    body: bytes = ANSWER
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Engine:
    """A loopback engine answering from a script (the last reply repeats); bodies recorded."""

    replies: list[Reply]
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            self.bodies.append(await reader.readexactly(length))
            reply = self.replies[min(len(self.bodies), len(self.replies)) - 1]
            extra = {"content-type": "application/json", **reply.headers}
            lines = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
            writer.write(
                b"HTTP/1.1 %d X\r\n%scontent-length: %d\r\n\r\n%s"
                % (reply.status, lines.encode(), len(reply.body), reply.body)
            )


@pytest.fixture
async def engine() -> AsyncIterator[Callable[..., Awaitable[Engine]]]:
    servers: list[asyncio.Server] = []

    async def start(*replies: Reply) -> Engine:
        fake = Engine(list(replies) or [Reply()])

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await fake.handle(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        servers.append(server)
        fake.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        return fake

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def client_for(url: str) -> EngineClient:
    return EngineClient(Endpoint("e", url, "key", ("m",), True), LLMSettings(timeout=10.0))


# Decoding ----------------------------------------------------------------------------------------


def test_an_engines_answer_decodes_leniently_into_the_appliances_structs() -> None:
    answer = decode_completion(ANSWER, b"application/json")
    assert isinstance(answer, ChatCompletion)
    assert (answer.id, answer.model, answer.text, answer.completion_tokens) == (
        "c1",
        "m",
        "hello",
        2,
    )
    assert answer.usage is not None and answer.usage.prompt_tokens == 5
    assert answer.choices is not None and answer.choices[0].finish_reason == "stop"


def test_missing_parts_read_as_no_content() -> None:
    for body in (b"{}", b'{"choices":[]}', b'{"choices":null}', b'{"choices":[{"index":0}]}'):
        answer = decode_completion(body, b"application/json")
        assert answer.text is None and answer.completion_tokens is None, body
    assert decode_completion(b'{"choices": 3}', b"application/json").text is None


def test_broken_json_sent_as_json_raises_and_other_text_has_no_content() -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_completion(ANSWER[: len(ANSWER) // 2], b"application/json; charset=utf-8")
    assert decode_completion(b"<html>oops</html>", b"text/html").text is None
    assert decode_completion(ANSWER, b"text/plain").text == "hello"


# Retry-After and the transport errors -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (b"7", 7.0),
        ("2.5", 2.5),
        (None, None),
        (b"Wed, 21 Oct 2015 07:28:00 GMT", None),
        (b"", None),
    ],
)
def test_retry_after_is_read_in_seconds(header: bytes | str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds


def test_a_read_timeout_is_an_engine_timeout_and_still_a_transport_error() -> None:
    exc = EngineReadTimeout("the engine sent nothing for 3 s")
    assert isinstance(exc, EngineConnectionError) and isinstance(exc, OSError)
    assert isinstance(exc, EngineTimeout) and isinstance(exc, ApplianceError)
    assert str(exc) == exc.message == "the engine sent nothing for 3 s"
    assert exc.retry_after is None and exc.status_code == 504


# One engine, no retries ---------------------------------------------------------------------------


async def test_the_payload_goes_to_the_engine_unchanged_structured_outputs_included(
    engine,
) -> None:
    fake = await engine()
    schema = {"type": "object", "properties": {"verdict": {"enum": ["allow", "block"]}}}
    payload = {
        "model": "m",
        "messages": [{"role": "user", "content": "héllo"}],
        "temperature": 0.2,
        "max_tokens": 64,
        "response_format": {"type": "json_schema", "json_schema": {"name": "V", "schema": schema}},
    }
    client = client_for(fake.url)
    answer = await request_completion(client, payload)
    await client.aclose()
    assert answer.text == "hello"
    assert msgspec.json.decode(fake.bodies[0]) == payload


async def test_a_status_worth_retrying_carries_the_engines_retry_after(engine) -> None:
    fake = await engine(Reply(429, b'{"error": "busy"}', {"retry-after": "3"}), Reply())
    client = client_for(fake.url)
    with pytest.raises(RetryableStatus) as caught:
        await request_completion(client, {"model": "m", "messages": []})
    assert (caught.value.status, caught.value.retry_after) == (429, 3.0)
    assert (await request_completion(client, {"model": "m", "messages": []})).text == "hello"
    await client.aclose()


async def test_an_engines_refusal_is_engine_refused_with_its_message_logged(engine, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="appliance.gateway")
    fake = await engine(Reply(400, VLLM_400), Reply(422, b"plain words\n"))
    client = client_for(fake.url)
    with pytest.raises(EngineRefused) as caught:
        await request_completion(client, {"model": "m", "messages": []})
    assert caught.value.status_code == 400 and caught.value.error_type == "invalid_request_error"
    assert caught.value.code == "engine_http_400"
    assert "maximum context length is 2048 tokens" in caught.value.message
    with pytest.raises(EngineRefused) as second:
        await request_completion(client, {"model": "m", "messages": []})
    assert second.value.status_code == 422 and second.value.message.endswith("plain words")
    await client.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        "engine e refused a request: 400 This model's maximum context length is 2048 tokens.",
        "engine e refused a request: 422 plain words",
    ]


async def test_a_refusal_in_the_nested_error_shape_logs_the_engines_reason(engine, caplog) -> None:
    """vLLM 0.32 answers `{"error": {"message", "type", "param", "code"}}`."""
    caplog.set_level(logging.WARNING, logger="appliance.gateway")
    nested = (
        b'{"error":{"message":"This model\'s maximum context length is 2048 tokens.",'
        b'"type":"BadRequestError","param":null,"code":400}}'
    )
    fake = await engine(Reply(400, nested))
    client = client_for(fake.url)
    with pytest.raises(EngineRefused) as caught:
        await request_completion(client, {"model": "m", "messages": []})
    await client.aclose()
    assert "maximum context length is 2048 tokens" in caught.value.message
    assert [r.getMessage() for r in caplog.records] == [
        "engine e refused a request: 400 This model's maximum context length is 2048 tokens.",
    ]


async def test_an_unreachable_engine_is_a_transport_error() -> None:
    client = client_for(f"http://127.0.0.1:{closed_port()}/v1")
    with pytest.raises(EngineConnectionError, match="cannot connect"):
        await request_completion(client, {"model": "m", "messages": []})
    await client.aclose()


# Through the gateway's chain -----------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.done: list[dict[str, Any]] = []

    def engine_failure(self, engine_id: str, reason: str) -> None:
        self.failures.append((engine_id, reason))

    def request_done(self, **seen: Any) -> None:
        self.done.append(seen)


def gateway_on(cfg: Config, urls: dict[str, str]) -> tuple[Gateway, Recorder]:
    endpoints = [
        Endpoint(e.id, urls.get(e.id) or f"http://127.0.0.1:{closed_port()}/v1", "k", e.names, True)
        for e in cfg.engines
    ]
    recorder = Recorder()
    return Gateway(cfg, engine_clients(endpoints, cfg.llm), recorder=recorder), recorder


def ask(model: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


async def test_complete_falls_back_like_dispatch_and_the_recorder_sees_it(engine) -> None:
    busy = await engine(Reply(503, b"{}", {"retry-after": "7"}))
    fallback = await engine()
    gw, recorder = gateway_on(config(), {"llama-8b": busy.url, "qwen-32b": fallback.url})
    completion = await gw.complete(gw.route("guardrail"), ask, priority=Priority.GUARDRAIL)
    assert completion.result.text == "hello"
    assert (completion.model, completion.engine_id) == ("qwen-2.5-32b-instruct", "qwen-32b")
    assert completion.fallback_used
    assert completion.skipped == ["llama-3.1-8b-instruct: engine answered 503"]
    assert msgspec.json.decode(fallback.bodies[0]) == ask("qwen-2.5-32b-instruct")
    assert gw.breakers["llama-8b"].state is BreakerState.OPEN  # threshold 1
    assert recorder.failures == [("llama-8b", "RetryableStatus")]
    [done] = recorder.done
    assert (done["agent"], done["model"], done["outcome"], done["tokens"]) == (
        "guardrail",
        "qwen-2.5-32b-instruct",
        "ok",
        2,
    )
    await gw.aclose()


async def test_no_engine_left_is_engine_unavailable_with_the_engines_retry_after(engine) -> None:
    busy = await engine(Reply(503, b"{}", {"retry-after": "7"}))
    gw, recorder = gateway_on(config(), {"llama-8b": busy.url})
    with pytest.raises(EngineUnavailable) as caught:
        await gw.complete(gw.route("guardrail"), ask, priority=Priority.GUARDRAIL)
    assert caught.value.retry_after == 7.0 and caught.value.status_code == 503
    assert "qwen-2.5-32b-instruct: engine unreachable (EngineConnectionError)" in (
        caught.value.message
    )
    assert recorder.done == []
    await gw.aclose()


async def test_a_refusal_passes_through_the_chain_without_counting_against_the_engine(
    engine,
) -> None:
    refusing = await engine(Reply(400, VLLM_400))
    fallback = await engine()
    gw, recorder = gateway_on(config(), {"llama-8b": refusing.url, "qwen-32b": fallback.url})
    with pytest.raises(EngineRefused):
        await gw.complete(gw.route("guardrail"), ask, priority=Priority.GUARDRAIL)
    assert gw.breakers["llama-8b"].state is BreakerState.CLOSED
    assert gw.breakers["llama-8b"].failures == 0
    assert fallback.bodies == [] and recorder.failures == [] and recorder.done == []
    await gw.aclose()


async def test_an_engine_that_sends_nothing_times_out_into_the_chains_503(engine) -> None:
    """The read timeout is an `EngineTimeout` inside the chain, yet the answer stays the chain's
    `EngineUnavailable`: 503 with Retry-After, as before, for dispatch and complete alike."""
    silent = await engine()

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the request, answers nothing

    silent.handle = never  # type: ignore[method-assign]
    cfg = config()
    cfg = msgspec.structs.replace(cfg, llm=msgspec.structs.replace(cfg.llm, timeout=0.5))
    gw, recorder = gateway_on(cfg, {"llama-70b": silent.url, "llama-8b": silent.url})
    with pytest.raises(EngineUnavailable) as dispatched:
        await gw.dispatch(gw.route("kai"), lambda m: b"{}", priority=Priority.INTERACTIVE)
    for breaker in gw.breakers.values():
        breaker.reset()
    with pytest.raises(EngineUnavailable) as completed:
        await gw.complete(gw.route("kai"), ask, priority=Priority.INTERACTIVE)
    for caught in (dispatched.value, completed.value):
        assert type(caught) is EngineUnavailable and caught.status_code == 503
        assert caught.retry_after == 5.0
        assert "engine unreachable (EngineReadTimeout)" in caught.message
    assert (
        recorder.failures
        == [("llama-70b", "EngineReadTimeout"), ("llama-8b", "EngineReadTimeout")] * 2
    )
    await gw.aclose()
