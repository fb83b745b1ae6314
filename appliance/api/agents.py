"""The agent routes: one conversation turn, a safety check, and the two analyses.

Bodies are msgspec structs (`appliance.agents.schemas`), so they are validated on the way in and
described in the OpenAPI schema at `/schema`. Errors take the OpenAI shape through `api/errors.py`.
Also here: the crisis answer in chat-completion shape, for `model: "kai"` on `/v1/chat/completions`.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency
from litestar.params import JSONBody
from litestar.types import Send

from appliance.agents.crisis import detect
from appliance.agents.orchestrator import Orchestrator
from appliance.agents.schemas import (
    AnalysisRequest,
    ConverseRequest,
    ConverseResponse,
    CrisisSource,
    GeneticAnalysisResponse,
    GuardrailCheckRequest,
    GuardrailCheckResponse,
    WellnessAnalysisResponse,
)
from appliance.asgi import response_body, response_start, send_complete
from appliance.gateway.replicas import CONVERSATION_HEADER, conversation_key

_encode = msgspec.json.Encoder().encode


def _for_locale(agents: Orchestrator, locale: str | None) -> Orchestrator:
    """The agents, once the locale is known to have crisis resources (else a 400)."""
    agents.resources.require(locale)
    return agents


async def _conversation_key(request: Request[Any, Any, Any]) -> None:
    """`X-Conversation-Id` keeps a conversation's model calls on one replica (prefix cache)."""
    conversation_key.set(request.headers.get(CONVERSATION_HEADER))


class AgentsController(Controller):
    path = "/v1"
    tags = ["agents"]
    before_request = _conversation_key  # type: ignore[assignment]  # Litestar unbinds it
    # 200 analysis items of 8,000 characters fit; a larger body is refused before decoding.
    request_max_body_size = 4 * 1024 * 1024

    @post(
        "/converse",
        status_code=200,
        summary="One conversation turn with Kai, checked by the Guardrail",
        description=(
            "Runs the crisis detector, then the Guardrail on the message concurrently with Kai's "
            "draft, and (by configuration) the Guardrail on the draft. The reply is released only "
            "when the Guardrail allows it. On a crisis the reply carries the locale's crisis "
            "resources, whatever the models are doing. `fallback_step` says what produced the "
            "reply: model, fallback_model, cache, generic or crisis_protocol."
        ),
    )
    async def converse(
        self, orchestrator: NamedDependency[Orchestrator], data: JSONBody[ConverseRequest]
    ) -> ConverseResponse:
        return await _for_locale(orchestrator, data.locale).converse(data)

    @post(
        "/agents/guardrail/check",
        status_code=200,
        summary="Classify a person's message or a reply about to be shown",
        description=(
            "Verdict allow, caution, block or crisis, with risk level, categories and rationale. "
            "A crisis verdict carries the locale's crisis resources. When the Guardrail cannot "
            "answer, the configured policy decides and `source` is `policy`."
        ),
    )
    async def guardrail_check(
        self, orchestrator: NamedDependency[Orchestrator], data: JSONBody[GuardrailCheckRequest]
    ) -> GuardrailCheckResponse:
        return await _for_locale(orchestrator, data.locale).check(data)

    @post(
        "/agents/genetic/analyze",
        status_code=200,
        summary="Traits and preferences from a history of messages or check-ins",
        description=(
            "Validated JSON only: named traits with scores, evidence counts and confidence. "
            "Invalid model output after one repair attempt is a 502 `invalid_model_output`."
        ),
    )
    async def genetic_analyze(
        self, orchestrator: NamedDependency[Orchestrator], data: JSONBody[AnalysisRequest]
    ) -> GeneticAnalysisResponse:
        return await _for_locale(orchestrator, data.locale).analyze_genetic(data)

    @post(
        "/agents/wellness/analyze",
        status_code=200,
        summary="Wellbeing patterns, trend, a proactive step and its urgency",
        description=(
            "Validated JSON only. A crisis found in the history by the detector raises the "
            "urgency to `urgent` with crisis support as the step, and adds the crisis resources."
        ),
    )
    async def wellness_analyze(
        self, orchestrator: NamedDependency[Orchestrator], data: JSONBody[AnalysisRequest]
    ) -> WellnessAnalysisResponse:
        return await _for_locale(orchestrator, data.locale).analyze_wellness(data)


# The crisis answer on /v1/chat/completions -------------------------------------------------------


def last_user_text(messages: list[Any]) -> str | None:
    """The newest user message's text (string content or text parts); earlier turns were checked
    when they arrived."""
    texts = user_texts(messages)
    return texts[-1] if texts else None


def user_texts(messages: list[Any]) -> list[str]:
    """The text of every user message, oldest first (string content or text parts)."""
    out = []
    for message in messages:
        content = message.content
        if message.role != "user" or content is None:
            continue
        if isinstance(content, str):
            out.append(content)
        elif isinstance(content, list):
            out.append(" ".join(part.text or "" for part in content if part.type == "text"))
    return out


async def answer_crisis(
    orchestrator: Orchestrator, head: Any, body: bytes, send: Send, *, engines_down: bool = False
) -> bool:
    """If the newest user message is a crisis, answer it with the crisis reply in chat-completion
    shape (streamed or not, as asked) and return True; no model is called.

    Before the engines are asked, the phrase lists decide (instant, high precision). When no
    engine could answer (`engines_down`), the crisis classifier also reads the newest message
    with the person's last turns, as it does on /v1/converse when the Guardrail cannot run."""
    texts = user_texts(head.messages)
    if not texts:
        return False
    source: CrisisSource = "crisis_detector"
    if engines_down:
        detection = await orchestrator.detect_in(texts[-1], texts[:-1])
        found = detection.is_crisis
        if detection.source == "classifier":
            source = "classifier"
        categories = detection.signal.categories
    else:
        signal = detect(texts[-1])
        found, categories = signal.is_crisis, signal.categories
    if not found:
        return False
    notice = orchestrator.crisis_notice(categories, source, None)
    reply = orchestrator.crisis_text(notice)
    ident, created = f"chatcmpl-crisis-{uuid.uuid4().hex}", int(time.time())
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"text/event-stream" if head.stream else b"application/json"),
        (b"x-appliance-model", b"crisis_protocol"),
        (b"x-appliance-fallback", b"false"),
        (b"x-appliance-fallback-step", b"crisis_protocol"),
    ]
    if head.stream:  # the whole stream in one part, framed by the server like any stream
        events = _sse(ident, created, reply, _include_usage(body))
        await send(response_start(200, headers))
        await send(response_body(events))
    else:
        await send_complete(send, 200, headers, _encode(_completion(ident, created, reply)))
    return True


class _StreamOptions(msgspec.Struct):
    include_usage: bool = False


class _UsageHead(msgspec.Struct):
    stream_options: _StreamOptions | None = None


def _include_usage(body: bytes) -> bool:
    try:
        options = msgspec.json.decode(body, type=_UsageHead).stream_options
    except msgspec.MsgspecError:
        return False
    return options is not None and options.include_usage


_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _completion(ident: str, created: int, reply: str) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": "kai",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    }


def _sse(ident: str, created: int, reply: str, include_usage: bool) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": "kai",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + _encode(body) + b"\n\n"

    parts = [
        chunk({"role": "assistant", "content": ""}, None),
        chunk({"content": reply}, None),
        chunk({}, "stop"),
    ]
    if include_usage:
        usage = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": "kai",
            "choices": [],
            "usage": _USAGE,
        }
        parts.append(b"data: " + _encode(usage) + b"\n\n")
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)
