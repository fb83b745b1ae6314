"""The server-sent events of one streamed answer, in vLLM's chunk sequence."""

from __future__ import annotations

import time

import msgspec

from appliance.simulator.protocol import FINGERPRINT, ChatCompletionChunk, ChunkChoice, Delta, Usage

_encode = msgspec.json.Encoder().encode


class Chunker:
    """Server-sent events for one stream, sharing its id, timestamp and model."""

    __slots__ = ("created", "id", "include_usage", "model", "n")

    def __init__(self, id: str, model: str, n: int, include_usage: bool) -> None:
        self.id = id
        self.model = model
        self.n = n
        self.created = int(time.time())
        self.include_usage = include_usage

    def roles(self) -> bytes:
        return b"".join(
            self._event([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
            for i in range(self.n)
        )

    def __call__(self, content: str, *, finish: str | None = None) -> bytes:
        last = finish is not None and not self.include_usage
        return b"".join(
            self._event(
                [ChunkChoice(index=i, delta=Delta(content=content), finish_reason=finish)],
                fingerprint=last,
            )
            for i in range(self.n)
        )

    def usage(self, usage: Usage) -> bytes:
        return self._event([], usage, fingerprint=True)

    def broken(self, content: str) -> bytes:
        event = self._event([ChunkChoice(delta=Delta(content=content))])
        return event[: len(event) // 2] + b"\n\n"

    def _event(
        self, choices: list[ChunkChoice], usage: Usage | None = None, *, fingerprint: bool = False
    ) -> bytes:
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices
        )
        if usage is not None:
            chunk.usage = usage
        if fingerprint:
            chunk.system_fingerprint = FINGERPRINT
        return b"data: " + _encode(chunk) + b"\n\n"


def token_usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, total_tokens=prompt + completion, completion_tokens=completion
    )
