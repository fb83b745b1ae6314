"""The health-probe seam: is an engine answering its health URL?

vLLM and the simulator answer `GET /health` with 200 once the model is loaded. The real probe keeps
one HTTP client for every check; tests pass a fake.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

import httpx2

from appliance.gateway import tls


class HealthProbe(Protocol):
    async def check(self, url: str) -> bool:
        """True when `url` answers 200; any error or other status is False, never raised."""
        ...


class HttpHealthProbe:
    """GETs the health URL with a short timeout through one reused client."""

    def __init__(self, timeout_s: float = 2.0, *, ca_file: str | None = None) -> None:
        self._timeout_s = timeout_s
        self._ca_file = ca_file
        self._client: httpx2.AsyncClient | None = None

    async def check(self, url: str) -> bool:
        if self._client is None:
            # Engines listen on loopback: never probe them through a proxy named in the environment.
            # No kept-alive connections: a restarted engine would leave a dead one behind.
            # HTTPS trusts what every other engine call trusts (gateway/tls.py).
            self._client = httpx2.AsyncClient(
                timeout=self._timeout_s,
                trust_env=False,
                verify=tls.client_context(self._ca_file),
                limits=httpx2.Limits(max_keepalive_connections=0),
            )
        try:
            response = await self._client.get(url)
        except (httpx2.HTTPError, httpx2.InvalidURL, OSError) as exc:
            tls.report(urlsplit(url).netloc, url, exc)
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
