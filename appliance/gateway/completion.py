"""An engine's chat completion as the agents read it, in the appliance's own structs.

The agents' calls go over the passthrough's transport: the payload is encoded with msgspec and sent
unchanged (a `response_format` JSON schema included), and the answer is decoded into these structs.
They are lenient, as engines differ: unknown fields are ignored and every field may be missing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.gateway.retry import is_retryable_status
from appliance.gateway.transport import EngineTransport, Upstream, refusal, retryable


class Usage(msgspec.Struct, frozen=True):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class Message(msgspec.Struct, frozen=True):
    role: str | None = None
    content: str | None = None


class Choice(msgspec.Struct, frozen=True):
    index: int = 0
    message: Message | None = None
    finish_reason: str | None = None


class ChatCompletion(msgspec.Struct, frozen=True):
    id: str | None = None
    model: str | None = None
    choices: list[Choice] | None = None
    usage: Usage | None = None

    @property
    def text(self) -> str | None:
        """The first choice's content; None when the engine sent none."""
        if not self.choices:
            return None
        message = self.choices[0].message
        return message.content if message is not None else None

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.completion_tokens if self.usage is not None else None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(ChatCompletion).decode


async def request_completion(transport: EngineTransport, payload: dict[str, Any]) -> ChatCompletion:
    """One chat completion from one engine, no retries (the gateway's `_chain` adds them)."""
    response = await transport.post_chat(_encode(payload))
    return await read_completion(transport.engine_id, response)


async def read_completion(engine_id: str, response: Upstream) -> ChatCompletion:
    """The engine's answer decoded; `RetryableStatus` or `EngineRefused` for an error status."""
    if is_retryable_status(response.status):
        raise await retryable(response)
    if response.status >= 400:
        raise await refusal(engine_id, response)
    return decode_completion(await response.read(), response.content_type)


def decode_completion(body: bytes, content_type: bytes) -> ChatCompletion:
    """`body` as a `ChatCompletion`; broken JSON sent as JSON raises `msgspec.DecodeError`.

    An answer of another shape, or not sent as JSON, reads as a completion without choices: the
    agent sees no content, which its own checks treat as an invalid answer.
    """
    try:
        return _decode(body)
    except msgspec.ValidationError:
        return ChatCompletion()
    except msgspec.DecodeError:
        if content_type.split(b";", 1)[0].strip().endswith(b"json"):
            raise
        return ChatCompletion()
