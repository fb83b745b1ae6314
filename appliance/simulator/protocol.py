"""The wire shapes of vLLM's OpenAI-compatible API, as msgspec structs.

Requests ignore unknown fields (clients send many); responses carry exactly vLLM's fields plus the
simulator's `system_fingerprint`.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType

FINGERPRINT = "appliance-sim"


# Requests ------------------------------------------------------------------------------------


class ContentPart(Struct, kw_only=True):
    type: str = "text"
    text: str | None = None


class Message(Struct, kw_only=True):
    role: str
    content: str | list[ContentPart] | None = None

    def text_parts(self) -> list[str]:
        if isinstance(self.content, str):
            return [self.content]
        if self.content is None:
            return []
        return [part.text for part in self.content if part.text]


class JsonSchemaFormat(Struct, kw_only=True):
    name: str = "response"
    schema: Any = None
    strict: bool | None = None


class ResponseFormat(Struct, kw_only=True):
    type: str
    json_schema: JsonSchemaFormat | None = None


class StreamOptions(Struct, kw_only=True):
    include_usage: bool = False


class StructuredOutputs(Struct, kw_only=True):
    json: Any = None


class ChatRequest(Struct, kw_only=True):
    messages: Annotated[list[Message], Meta(min_length=1)]
    model: str | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Meta(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Meta(ge=1)] | None = None
    min_tokens: Annotated[int, Meta(ge=0)] = 0
    ignore_eos: bool = False
    n: Annotated[int, Meta(ge=1)] = 1
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    response_format: ResponseFormat | None = None
    # vLLM's extra parameter for structured output (its older `guided_json` is ignored, as
    # vLLM 0.32 ignores it: read here only to warn).
    structured_outputs: StructuredOutputs | None = None
    guided_json: Any = None


class FaultPatch(Struct, kw_only=True, forbid_unknown_fields=True):
    """`POST /sim/faults`: any subset of the fault knobs and one-shot counters."""

    error_rate: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    stall_rate: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    stall_s: Annotated[float, Meta(ge=0)] | UnsetType = UNSET
    malformed_rate: Annotated[float, Meta(ge=0, le=1)] | UnsetType = UNSET
    crash_after: Annotated[int, Meta(ge=1)] | UnsetType | None = UNSET
    error_next: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    stall_next: Annotated[int, Meta(ge=0)] | UnsetType = UNSET
    malformed_next: Annotated[int, Meta(ge=0)] | UnsetType = UNSET


# Responses -----------------------------------------------------------------------------------


class Usage(Struct, kw_only=True):
    prompt_tokens: int
    total_tokens: int
    completion_tokens: int


class AnswerMessage(Struct, kw_only=True):
    role: str = "assistant"
    content: str
    tool_calls: list[Any] = []


class Choice(Struct, kw_only=True):
    index: int = 0
    message: AnswerMessage
    logprobs: None = None
    finish_reason: str
    stop_reason: None = None


class ChatCompletion(Struct, kw_only=True):
    id: str
    object: str = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    system_fingerprint: str = FINGERPRINT


class Delta(Struct, kw_only=True, omit_defaults=True):
    role: str | None = None
    content: str | None = None


class ChunkChoice(Struct, kw_only=True):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(Struct, kw_only=True):
    """vLLM's chunk: `usage` only on the last one (with include_usage), the fingerprint only on
    the last one."""

    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    system_fingerprint: str | UnsetType = UNSET
    usage: Usage | UnsetType = UNSET


class ModelCard(Struct, kw_only=True):
    id: str
    object: str = "model"
    created: int
    owned_by: str = "vllm"
    root: str
    parent: None = None
    max_model_len: int


class ModelList(Struct, kw_only=True):
    object: str = "list"
    data: list[ModelCard]


class ErrorInfo(Struct, kw_only=True):
    message: str
    type: str
    param: str | None = None
    code: int


class ErrorBody(Struct, kw_only=True):
    error: ErrorInfo
