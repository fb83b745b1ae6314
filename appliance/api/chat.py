"""`POST /v1/chat/completions`: the OpenAI-compatible passthrough, kept lean.

A raw ASGI route: the body is validated with msgspec and forwarded as bytes (rewritten only when the
model name changes or an agent's prompt applies); the engine's answer streams back byte for byte.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import asgi
from litestar.handlers import ASGIRouteHandler
from litestar.types import HTTPRequestEvent, Receive, Scope, Send

from appliance.agents.orchestrator import Orchestrator
from appliance.agents.prompts import system_prompt
from appliance.api.agents import answer_crisis
from appliance.api.bodies import decode
from appliance.api.errors import error_body, error_parts
from appliance.asgi import response_body, response_start, send_complete
from appliance.config.schema import AgentConfig
from appliance.errors import ApplianceError, BadRequest
from appliance.gateway.gateway import Dispatch, Gateway, Route
from appliance.gateway.hooks import Recorder
from appliance.gateway.replicas import CONVERSATION_HEADER, conversation_key
from appliance.gateway.transport import engine_error
from appliance.load.priority import PRIORITY_HEADER, Priority

log = logging.getLogger("appliance.api.chat")

MAX_BODY_BYTES = 4 * 1024 * 1024
_PRIORITY_HEADER = PRIORITY_HEADER.encode()
_CONVERSATION_HEADER = CONVERSATION_HEADER.encode()


class ContentPart(msgspec.Struct):
    """One part of a message's content: text, or a kind the engine knows (image_url, ...)."""

    type: str
    text: str | None = None

    def __post_init__(self) -> None:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs `text`")


class Message(msgspec.Struct):
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[ContentPart] | None = None

    def __post_init__(self) -> None:
        # Only an assistant turn (one that called tools) may come without content.
        if self.content is None and self.role != "assistant":
            raise ValueError(f"a {self.role} message needs `content`")


Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
TokenCount = Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]


class ChatHead(msgspec.Struct):
    """The fields the gateway needs, and the sampling fields an engine would refuse out of range
    (checked here, so the caller gets a 400 without an engine round trip); everything else passes
    through untouched."""

    model: str
    messages: Annotated[list[Message], msgspec.Meta(min_length=1)]
    stream: bool = False
    response_format: dict[str, Any] | None = None
    temperature: Temperature | None = None
    top_p: Annotated[float, msgspec.Meta(gt=0, le=1)] | None = None
    max_tokens: TokenCount | None = None
    max_completion_tokens: TokenCount | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    stop: str | Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    # OpenAI's end-user id: keeps the user's conversation on one replica (prefix cache).
    user: str | None = None


_decode_head = msgspec.json.Decoder(ChatHead).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


def chat_route(
    gateway: Gateway, agents: Orchestrator, settings: dict[str, AgentConfig]
) -> ASGIRouteHandler:
    """`POST /v1/chat/completions` over these parts: a raw ASGI handler, the hot path."""

    @asgi("/v1/chat/completions", copy_scope=False)
    async def chat_completions(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":  # type: ignore[typeddict-item]
            await _send_error(send, BadRequest("Use POST for /v1/chat/completions."), status=405)
            return
        head: ChatHead | None = None
        route: Route | None = None
        body = b""
        try:
            body = await _read_body(receive)
            head = _parse(body)
            route = gateway.route(head.model)
            if route.agent == "kai" and await answer_crisis(agents, head, body, send):
                return  # a crisis: the crisis protocol answers, whatever the engines are doing
            priority = Priority.parse(
                _header(scope, _PRIORITY_HEADER), Priority.for_agent(route.agent)
            )
            builder = _body_builder(body, head, route, settings)
            conversation_key.set(_header(scope, _CONVERSATION_HEADER) or head.user)
            dispatch = await gateway.dispatch(route, builder, priority=priority)
        except ApplianceError as exc:
            if _answers_in_text(exc, head, route) and await answer_crisis(
                agents, head, body, send, engines_down=True
            ):
                return  # no engine could answer, but a person in crisis still gets resources
            await _send_error(send, exc)
            return
        await _relay(dispatch, send, head.stream, route, gateway.recorder, receive)

    return chat_completions


def _answers_in_text(exc: ApplianceError, head: ChatHead | None, route: Route | None) -> bool:
    """A failed conversational request (not JSON, not an analysis agent) on engine trouble.

    Only then is the crisis detector consulted, so the healthy hot path pays nothing for it.
    """
    return (
        exc.status_code in (503, 504)
        and head is not None
        and head.response_format is None
        and route is not None
        and route.agent in (None, "kai")
    )


def _parse(body: bytes) -> ChatHead:
    return cast("ChatHead", decode(body, decoder=_decode_head))


def _body_builder(
    body: bytes, head: ChatHead, route: Route, agents: dict[str, AgentConfig]
) -> Callable[[str], bytes]:
    """A function from the target model name to the bytes sent to its engine."""
    if route.agent is None:
        if route.targets == (head.model,):
            return lambda _model: body
        payload = _decode_any(body)
        return lambda model: _encode({**payload, "model": model})
    payload = apply_agent(_decode_any(body), route.agent, agents[route.agent])
    return lambda model: _encode({**payload, "model": model})


def apply_agent(payload: dict[str, Any], agent: str, settings: AgentConfig) -> dict[str, Any]:
    """The agent's system prompt and its sampling settings, where the caller set none.

    A caller that sends its own system message (an existing Kai backend with its own prompts)
    keeps it: it gains the agent's fallback chain and priority without a second prompt.
    """
    messages = payload["messages"]
    if not any(m.get("role") == "system" for m in messages):
        messages = [{"role": "system", "content": system_prompt(agent)}, *messages]
    out = {**payload, "messages": messages}
    out.setdefault("temperature", settings.temperature)
    out.setdefault("top_p", settings.top_p)
    if "max_tokens" not in out and "max_completion_tokens" not in out:
        out["max_tokens"] = settings.max_tokens
    return out


async def _relay(
    dispatch: Dispatch, send: Send, stream: bool, route: Route, recorder: Recorder, receive: Receive
) -> None:
    response = dispatch.response
    headers = [
        (b"content-type", response.content_type),
        (b"x-appliance-model", dispatch.model.encode()),
        (b"x-appliance-fallback", b"true" if dispatch.fallback_used else b"false"),
    ]
    outcome, ttft = "ok" if response.status < 400 else f"http_{response.status}", None
    tokens: int | None = None
    try:
        if not stream or response.status >= 400:
            data = await response.read()
            if response.status >= 400:
                data = engine_error_body(response.status, data)
                headers[0] = (b"content-type", b"application/json")
            else:
                tokens = completion_tokens(data)
            await send_complete(send, response.status, headers, data)
            return
        await send(response_start(response.status, headers))
        # The server ignores sends to a client that has gone, so watch for it: an abandoned
        # stream must not keep its engine slot and its engine generating.
        gone = asyncio.ensure_future(_client_gone(receive))
        try:
            async for chunk in response.iter_bytes():
                if gone.done():
                    outcome = "client_gone"
                    break
                if ttft is None:
                    ttft = time.perf_counter() - dispatch.started
                if _COMPLETION_TOKENS in chunk:  # the usage chunk (stream_options.include_usage)
                    tokens = completion_tokens(chunk) or tokens
                await send(response_body(chunk, more=True))
        except Exception as exc:  # the engine died mid-stream: tell the client in-band
            outcome = "stream_error"
            log.warning("stream from %s broke: %s", dispatch.engine_id, type(exc).__name__)
            await send(response_body(_stream_error(), more=True))
        finally:
            gone.cancel()
        if outcome == "client_gone":
            await response.aclose()  # drops the engine connection: the engine stops generating
            return
        await send(response_body(b""))
    except OSError:
        outcome = "client_gone"
    finally:
        dispatch.release()
        recorder.request_done(
            agent=route.agent,
            model=dispatch.model,
            outcome=outcome,
            ttft_s=ttft,
            e2e_s=time.perf_counter() - dispatch.started,
            tokens=tokens,
        )


_COMPLETION_TOKENS = b'"completion_tokens"'
_TOKENS_VALUE = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


def completion_tokens(data: bytes) -> int | None:
    """The usage's completion tokens in an engine's answer, found without decoding the body."""
    found = _TOKENS_VALUE.search(data)
    return int(found.group(1)) if found else None


def engine_error_body(status: int, data: bytes) -> bytes:
    """An engine's error answer in the OpenAI shape, whatever shape the engine used.

    vLLM answers `{"object": "error", "message": ..., "code": 400}`, others plain text; a client
    of the appliance always gets `{"error": {"message", "type", "param", "code"}}`.
    """
    parsed = engine_error(data)
    inner = parsed.detail
    message = parsed.reason
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = (inner.code if inner else None) or parsed.code
    return error_body(
        f"The engine refused the request: {message}"
        if message
        else f"The engine answered {status}.",
        kind,
        str(code) if code is not None else f"engine_http_{status}",
        (inner.param if inner else None) or parsed.param,
    )


async def _client_gone(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _stream_error() -> bytes:
    body = error_body("The engine stopped mid-answer.", "engine_unavailable", "stream_interrupted")
    return b"data: " + body + b"\n\n"


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        received = await receive()
        if received["type"] == "http.disconnect":
            raise BadRequest("The client went away before sending the request body.")
        message = cast("HTTPRequestEvent", received)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BadRequest(f"The request body is larger than {MAX_BODY_BYTES} bytes.")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send_error(send: Send, exc: ApplianceError, *, status: int | None = None) -> None:
    code, headers, body = error_parts(exc)
    await send_complete(send, status or code, headers, body)
