"""API keys and per-key rate limits for the appliance's own API, as one raw ASGI middleware.

Keys come from `[security].api_keys` and the variable named by `[security].api_keys_env`
(comma-separated). A request carries one as `Authorization: Bearer KEY` (what OpenAI clients send)
or `X-API-Key: KEY`; it is compared with every configured key in constant time. Only the paths
in `OPEN_PATHS` stay open: `/health` and the probes meant for load balancers; everything else,
`/health/detailed` included (engine pids, errors, load), needs a key. With no key configured every
route is open, and `appliance serve` refuses to listen beyond loopback.

Rate limits are token buckets, one per key (or one shared by everybody when no key is configured):
`rate_limit_rps` requests per second with bursts of `rate_limit_burst`; over it, 429 with
Retry-After. The middleware does a header scan, a few digest comparisons and some arithmetic: it
stays off the latency budget of the chat passthrough.
"""

from __future__ import annotations

import hmac
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from appliance.api.errors import error_parts
from appliance.asgi import send_complete
from appliance.config.schema import Config
from appliance.errors import ApplianceError, RateLimited, Unauthorized

# Exact paths; a new route is closed unless it is added here on purpose. The operations
# page's shell, its assets and whether it needs a key are open: its data is under /admin.
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready", "/ui", "/ui/session"})
OPEN_PREFIXES = ("/ui/static/",)
_AUTHORIZATION = b"authorization"
_X_API_KEY = b"x-api-key"
_BEARER = b"bearer "
_CHALLENGE = (b"www-authenticate", b'Bearer realm="appliance"')


def api_keys(config: Config) -> tuple[str, ...]:
    """Configured keys: the file's literal ones, then the environment variable's."""
    from_env = os.environ.get(config.security.api_keys_env, "")
    keys = [k.strip() for k in from_env.split(",") if k.strip()]
    return (*config.security.api_keys, *keys)


def is_open(path: str) -> bool:
    """Health probes answer without a key (load balancers and systemd probes have none), and
    so does the operations page's shell, which asks for a key before it reads any data."""
    return (path.rstrip("/") or "/") in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token: 0 when granted, else the seconds until one is there."""
        tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return 0.0
        self.tokens = tokens
        return (1.0 - tokens) / self.rate


class KeyCheck:
    """Which configured key (by index) a presented one matches, in constant time per key."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._keys = tuple(key.encode() for key in keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def match(self, presented: bytes) -> int | None:
        found = None
        for index, key in enumerate(self._keys):
            if hmac.compare_digest(presented, key) and found is None:
                found = index  # keep comparing: the time must not say which key matched
        return found


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The key in `Authorization: Bearer` or `X-API-Key`, if any."""
    for name, value in headers:
        if name == _AUTHORIZATION:
            if value[:7].lower() == _BEARER:
                return value[7:].strip()
        elif name == _X_API_KEY:
            return value.strip()
    return None


class Guard:
    """The keys and the buckets, shared by every route (Litestar wraps each route separately)."""

    def __init__(
        self,
        keys: Sequence[str],
        *,
        rate_limit_rps: float = 0.0,
        rate_limit_burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = KeyCheck(keys)
        self._clock = clock
        now = clock()
        self._buckets: list[TokenBucket] | None = (
            [TokenBucket(rate_limit_rps, rate_limit_burst, now) for _ in range(max(len(keys), 1))]
            if rate_limit_rps > 0
            else None
        )

    def refuse(self, headers: Iterable[tuple[bytes, bytes]]) -> ApplianceError | None:
        """Why this request may not pass, or None."""
        slot = 0
        if self._check:
            presented = presented_key(headers)
            found = self._check.match(presented) if presented is not None else None
            if found is None:
                return Unauthorized(_NO_KEY if presented is None else _BAD_KEY)
            slot = found
        if self._buckets is not None:
            wait = self._buckets[slot].take(self._clock())
            if wait > 0:
                return RateLimited(
                    f"Rate limit reached for this API key; retry after {math.ceil(wait)} s.",
                    retry_after=wait,
                )
        return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and not is_open(scope["path"]):
            refused = self.guard.refuse(scope["headers"])
            if refused is not None:
                await _refuse(send, refused)
                return
        await self.app(scope, receive, send)


_NO_KEY = "An API key is required: send `Authorization: Bearer <key>`."
_BAD_KEY = "The API key is not valid."


async def _refuse(send: Send, exc: ApplianceError) -> None:
    status, headers, body = error_parts(exc)
    if status == 401:
        headers.append(_CHALLENGE)
    await send_complete(send, status, headers, body)


def guard_for(config: Config) -> Guard:
    """The one guard `create_app` puts in front of every route, with the keys known at start."""
    return Guard(
        api_keys(config),
        rate_limit_rps=config.security.rate_limit_rps,
        rate_limit_burst=config.security.rate_limit_burst,
    )
