"""One streamed chat completion, timed chunk by chunk.

Through the appliance, the `x-appliance-model` and `x-appliance-fallback` response headers say
which model answered; a sample is filed under that model and marked when it was a fallback.

Timing follows `vllm bench serve`: time to first token is when the first chunk carrying text
arrives, inter-token latency is the gap between successive text chunks, end-to-end latency runs
from sending the request to the end of the stream; token counts come from the final usage chunk
(`stream_options.include_usage`). Errors keep the HTTP status and error type only, never the
message, which could echo request text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2
import msgspec

from appliance.bench.records import Sample
from appliance.bench.workloads import BenchRequest
from appliance.load.priority import PRIORITY_HEADER

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Target:
    """Where one agent's benchmark requests go: the appliance (model = agent) or an engine."""

    agent: str
    base_url: str  # OpenAI-compatible, ending in /v1
    model: str
    api_key: str = ""
    # A simulator running at time scale s answers s times faster than the hardware it models;
    # measured times are divided by s so that figures read as real seconds.
    time_scale: float = 1.0
    # An engine reached directly gets no agent system prompt from the appliance; give it one of
    # this many synthetic words so that prefill looks alike.
    system_words: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    # The model the figures are filed under when `model` is an agent name sent to the appliance.
    reports_as: str = ""

    @property
    def model_name(self) -> str:
        return self.reports_as or self.model


class _Delta(msgspec.Struct):
    content: str | None = None
    reasoning_content: str | None = None


class _Choice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)


class _Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Error(msgspec.Struct):
    type: str | None = None
    code: str | int | None = None


class _Chunk(msgspec.Struct):
    choices: list[_Choice] = []
    usage: _Usage | None = None
    error: _Error | str | None = None


class _ErrorBody(msgspec.Struct):
    error: _Error | str | None = None
    type: str | None = None


_chunk_decoder = msgspec.json.Decoder(_Chunk)
_error_decoder = msgspec.json.Decoder(_ErrorBody)


def payload(target: Target, req: BenchRequest) -> dict[str, Any]:
    messages = list(req.messages)
    if target.system_words:
        filler = " ".join(["synthetic"] * target.system_words)
        messages.insert(0, {"role": "system", "content": f"(synthetic system prompt) {filler}"})
    return {
        "model": target.model,
        "messages": messages,
        "max_tokens": req.max_tokens,
        # vLLM's extension: generate exactly max_tokens, so output length is the workload's.
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def headers(target: Target) -> dict[str, str]:
    out = {PRIORITY_HEADER: "benchmark", **target.headers}
    if target.api_key:
        out["authorization"] = f"Bearer {target.api_key}"
    return out


class StreamClient:
    """Sends benchmark requests over one pooled async HTTP client."""

    def __init__(
        self,
        *,
        timeout_s: float = 120.0,
        clock: Clock = time.perf_counter,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self._clock = clock
        self._http = httpx2.AsyncClient(
            timeout=httpx2.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            limits=httpx2.Limits(max_connections=None, max_keepalive_connections=256),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> StreamClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send(
        self, target: Target, req: BenchRequest, *, phase: int, seq: int, t0: float
    ) -> Sample:
        """Stream one request; `t0` is the run's start on the same clock."""
        timing = _Timing(self._clock())
        error: str | None = None
        usage: _Usage | None = None
        served: tuple[str, bool] | None = None
        try:
            url = target.base_url.rstrip("/") + "/chat/completions"
            async with self._http.stream(
                "POST", url, json=payload(target, req), headers=headers(target)
            ) as resp:
                served = _served(resp)
                if resp.status_code != 200:
                    error = _status_error(resp.status_code, await _read_capped(resp))
                else:
                    usage, error = await self._consume(resp, timing)
        except httpx2.TimeoutException:
            error = "timeout"
        except httpx2.ConnectError:
            error = "connect_error"
        except httpx2.HTTPError as exc:
            error = _snake(type(exc).__name__)
        timing.end = self._clock()
        return timing.sample(
            target, req, phase=phase, seq=seq, t0=t0, usage=usage, error=error, served=served
        )

    async def _consume(
        self, resp: httpx2.Response, timing: _Timing
    ) -> tuple[_Usage | None, str | None]:
        usage: _Usage | None = None
        async for line in resp.aiter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            now = self._clock()
            try:
                chunk = _chunk_decoder.decode(data)
            except msgspec.DecodeError:
                return usage, "bad_chunk"
            if chunk.error is not None:
                return usage, "stream_error " + _error_type(chunk.error)
            if chunk.usage is not None:
                usage = chunk.usage
            if any(c.delta.content or c.delta.reasoning_content for c in chunk.choices):
                timing.token(now)
        if timing.first is None:
            return usage, "empty_stream"
        return usage, None


class _Timing:
    __slots__ = ("chunks", "end", "first", "gaps", "last", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.first: float | None = None
        self.last = start
        self.end = start
        self.gaps: list[float] = []
        self.chunks = 0

    def token(self, now: float) -> None:
        if self.first is None:
            self.first = now
        else:
            self.gaps.append(now - self.last)
        self.last = now
        self.chunks += 1

    def sample(
        self,
        target: Target,
        req: BenchRequest,
        *,
        phase: int,
        seq: int,
        t0: float,
        usage: _Usage | None,
        error: str | None,
        served: tuple[str, bool] | None = None,
    ) -> Sample:
        k = 1.0 / target.time_scale
        completion = usage.completion_tokens if usage else self.chunks
        return Sample(
            phase=phase,
            seq=seq,
            agent=req.agent,
            model=served[0] if served else target.model_name,
            start_s=(self.start - t0) * k,
            ttft_s=((self.first - self.start) * k) if self.first is not None else 0.0,
            e2el_s=(self.end - self.start) * k,
            itl_s=tuple(g * k for g in self.gaps),
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=completion if error is None else 0,
            ok=error is None,
            fallback=bool(served and served[1]),
            error=error,
        )


def _served(resp: httpx2.Response) -> tuple[str, bool] | None:
    model = resp.headers.get("x-appliance-model")
    if not model:
        return None
    return model, resp.headers.get("x-appliance-fallback", "").lower() == "true"


async def _read_capped(resp: httpx2.Response, limit: int = 16384) -> bytes:
    body = b""
    async for part in resp.aiter_bytes():
        body += part
        if len(body) >= limit:
            break
    return body[:limit]


def _status_error(status: int, body: bytes) -> str:
    try:
        parsed = _error_decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return f"http_{status}"
    kind = _error_type(parsed.error) if parsed.error is not None else (parsed.type or "")
    return f"http_{status} {kind}".strip()


def _error_type(err: _Error | str) -> str:
    """The error's type or code: a short identifier. A bare string could be free text: dropped."""
    if isinstance(err, str):
        return "error"
    value = err.type or (str(err.code) if err.code is not None else "error")
    return _identifier(value)


def _identifier(value: str) -> str:
    cleaned = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in value)[:64]
    return cleaned or "error"


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
