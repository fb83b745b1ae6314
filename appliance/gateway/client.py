"""One client per engine: the engine transport (`transport.EngineTransport`) and the GETs.

Chat completions, the passthrough's and the agents' alike, go over `http1.Pool`: request bytes
out, the answer back as an `http1.Response` to relay byte for byte or to decode
(`gateway/completion.py`). The health and metrics GETs go over an httpx2 client.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx2

from appliance.config.schema import LLMSettings
from appliance.engines.base import Endpoint
from appliance.gateway import http1, tls


class _ReportingTransport(httpx2.AsyncBaseTransport):
    """The GETs' transport, naming a certificate failure in the log (gateway/tls.py)."""

    def __init__(self, engine_id: str, inner: httpx2.AsyncBaseTransport) -> None:
        self._engine_id = engine_id
        self._inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            return await self._inner.handle_async_request(request)
        except Exception as exc:
            tls.report(self._engine_id, str(request.url), exc)
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


class EngineClient:
    """The appliance's connection to one engine."""

    def __init__(self, endpoint: Endpoint, llm: LLMSettings, *, max_connections: int = 256):
        self.endpoint = endpoint
        self.engine_id = endpoint.engine_id
        self._llm = llm
        self._timeout = httpx2.Timeout(llm.timeout, connect=min(5.0, llm.timeout))
        # One TLS and proxy set-up for the chat completions and the GETs (gateway/tls.py).
        context = tls.checked_context(
            endpoint.ca_file or llm.ca_file,
            "models.toml",
            f"engines.{self.engine_id}.ca_file" if endpoint.ca_file else "llm.ca_file",
        )
        proxy = tls.proxy_for(endpoint.base_url)
        limits = httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self._http = httpx2.AsyncClient(
            timeout=self._timeout,
            transport=_ReportingTransport(
                self.engine_id,
                httpx2.AsyncHTTPTransport(
                    verify=context, limits=limits, proxy=proxy, trust_env=False
                ),
            ),
            trust_env=False,
        )
        self._headers = {
            "authorization": f"Bearer {endpoint.api_key}",
            "content-type": "application/json",
        }
        self._pool = http1.Pool(
            endpoint.base_url,
            max_connections=max_connections,
            connect_timeout=min(5.0, llm.timeout),
            ssl_context=context,
            proxy=proxy,
            engine_id=self.engine_id,
        )
        self._chat_head = self._pool.prepare("/chat/completions", self._headers)

    async def post_chat(self, body: bytes, *, timeout: float | None = None) -> http1.Response:
        """POST raw JSON bytes to the engine's chat completions; the body is streamed back.

        `timeout` bounds the wait for each piece of the answer (LLM_TIMEOUT by default).
        """
        return await self._pool.post(
            self._chat_head, body, timeout=self._llm.timeout if timeout is None else timeout
        )

    async def get(self, path: str, *, timeout: float = 2.0) -> httpx2.Response:
        """GET a path under the engine's root (`/health`, `/metrics`) or `/v1` (`/v1/models`)."""
        return await self._http.get(
            f"{self.endpoint.root_url}{path}", headers=self._headers, timeout=timeout
        )

    async def aclose(self) -> None:
        await self._pool.aclose()
        await self._http.aclose()


def engine_clients(endpoints: Iterable[Endpoint], llm: LLMSettings) -> dict[str, EngineClient]:
    """One client per engine, by engine id, in config order: the gateway's, the liveness
    prober's and the metrics scraper's connections to the engines."""
    return {ep.engine_id: EngineClient(ep, llm) for ep in endpoints}
