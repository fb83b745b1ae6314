"""One client per engine: a pooled HTTP transport shared by the byte passthrough and `AsyncOpenAI`.

The passthrough forwards request bytes and streams response bytes untouched (no SDK objects per
chunk); agents use the `AsyncOpenAI` client built lazily on the same connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2

from appliance.config.schema import LLMSettings
from appliance.engines.base import Endpoint

if TYPE_CHECKING:
    from openai import AsyncOpenAI

# Errors that mean "the engine could not be reached or did not answer in time".
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (httpx2.TransportError,)
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(slots=True)
class UpstreamResponse:
    """An engine's answer, body not yet read."""

    status: int
    headers: httpx2.Headers
    _response: httpx2.Response

    @property
    def content_type(self) -> bytes:
        return self.headers.get("content-type", "application/json").encode("latin-1")

    def retry_after(self) -> float | None:
        value = self.headers.get("retry-after")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    async def read(self) -> bytes:
        try:
            return await self._response.aread()
        finally:
            await self._response.aclose()

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        finally:
            await self._response.aclose()

    async def aclose(self) -> None:
        await self._response.aclose()


class EngineClient:
    """The appliance's connection to one engine."""

    def __init__(self, endpoint: Endpoint, llm: LLMSettings, *, max_connections: int = 256):
        self.endpoint = endpoint
        self.engine_id = endpoint.engine_id
        self._llm = llm
        self._timeout = httpx2.Timeout(llm.timeout, connect=min(5.0, llm.timeout))
        self._http = httpx2.AsyncClient(
            timeout=self._timeout,
            limits=httpx2.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=30.0,
            ),
            trust_env=False,
        )
        self._chat_url = f"{endpoint.base_url}/chat/completions"
        self._headers = {
            "authorization": f"Bearer {endpoint.api_key}",
            "content-type": "application/json",
        }
        self._openai: AsyncOpenAI | None = None

    @property
    def openai(self) -> AsyncOpenAI:
        """`AsyncOpenAI` on the shared pool; retries are ours (`gateway.retry`), so none here."""
        if self._openai is None:
            from openai import AsyncOpenAI

            self._openai = AsyncOpenAI(
                base_url=self.endpoint.base_url,
                api_key=self.endpoint.api_key,
                max_retries=0,
                timeout=self._llm.timeout,
                http_client=self._http,
            )
        return self._openai

    async def post_chat(self, body: bytes, *, timeout: float | None = None) -> UpstreamResponse:
        """POST raw JSON bytes to the engine's chat completions; the body is streamed back."""
        request = self._http.build_request(
            "POST",
            self._chat_url,
            content=body,
            headers=self._headers,
            timeout=self._timeout if timeout is None else httpx2.Timeout(timeout),
        )
        response = await self._http.send(request, stream=True)
        return UpstreamResponse(response.status_code, response.headers, response)

    async def get(self, path: str, *, timeout: float = 2.0) -> httpx2.Response:
        """GET a path under the engine's root (`/health`, `/metrics`) or `/v1` (`/v1/models`)."""
        return await self._http.get(
            f"{self.endpoint.root_url}{path}", headers=self._headers, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._http.aclose()


def error_summary(exc: BaseException) -> str:
    """A short reason for logs and health: the exception type, never request content."""
    return type(exc).__name__


def describe(client: EngineClient) -> dict[str, Any]:
    return {"engine": client.engine_id, "base_url": client.endpoint.base_url}
