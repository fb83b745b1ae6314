"""`kind = "external"`: an OpenAI-compatible server run elsewhere; nothing is launched."""

from __future__ import annotations

from appliance.config.schema import EngineConfig
from appliance.engines.base import Endpoint
from appliance.errors import ConfigError
from appliance.gateway import tls

# What OpenAI-compatible servers without authentication (vLLM, Ollama) accept as a key.
NO_KEY = "EMPTY"


def endpoint(
    engine: EngineConfig, api_key: str | None = None, *, source: str = "models.toml"
) -> Endpoint:
    """Where the gateway reaches the server.

    `api_key`, the key that guards launched engines, is not sent to someone else's server; the
    engine's own `api_key` is. A URL without the `/v1` suffix gets it, as the Endpoint promises.
    """
    if not engine.base_url:
        raise ConfigError(source, f"engines.{engine.id}.base_url", "a URL for an external engine")
    base_url = engine.base_url.rstrip("/")
    if not base_url.endswith("/v1"):
        base_url += "/v1"
    if engine.ca_file:
        tls.checked_context(engine.ca_file, source, f"engines.{engine.id}.ca_file")
    return Endpoint(
        engine_id=engine.id,
        base_url=base_url,
        api_key=engine.api_key or NO_KEY,
        names=engine.names,
        launched=False,
        ca_file=engine.ca_file,
    )
