"""What every engine kind hands the supervisor and the gateway.

An engine kind (`vllm`, `sim`, `external`) turns its `EngineConfig` into an `Endpoint` (where the
gateway sends requests) and, for kinds the appliance launches, a `LaunchSpec` (what the supervisor
runs). The supervisor never looks at the kind; the gateway never looks at the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from appliance.config.schema import EngineConfig
from appliance.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an engine's OpenAI-compatible API answers."""

    engine_id: str
    base_url: str  # ends in /v1
    api_key: str
    names: tuple[str, ...]  # served name first, then aliases
    launched: bool  # False for `external`
    ca_file: str | None = None  # extra CAs trusted for this engine's HTTPS (gateway/tls.py)

    @property
    def root_url(self) -> str:
        """The URL without /v1, where /health and /metrics live."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """A process the supervisor starts, health-gates, restarts and stops."""

    engine_id: str
    argv: tuple[str, ...]
    env: dict[str, str]  # added to the appliance's own environment
    health_url: str
    startup_timeout_s: float
    # GPUs this process uses; engines sharing a GPU must start one after another.
    gpus: tuple[int, ...] = ()
    env_remove: tuple[str, ...] = field(default=())


LOOPBACK = "127.0.0.1"


def engine_port(engine: EngineConfig) -> int:
    """The port of an engine the appliance launches (the loader already requires one)."""
    if engine.port is None:
        raise ConfigError(
            "models.toml", f"engines.{engine.id}.port", f"a port for a {engine.kind} engine"
        )
    return engine.port


def loopback_endpoint(engine: EngineConfig, api_key: str) -> Endpoint:
    """Where a launched engine answers: loopback only, behind the appliance's internal key."""
    return Endpoint(
        engine_id=engine.id,
        base_url=f"http://{LOOPBACK}:{engine_port(engine)}/v1",
        api_key=api_key,
        names=engine.names,
        launched=True,
    )
