"""Builders shared by the planner's tests."""

from __future__ import annotations

from appliance.config.schema import EngineConfig


def vllm_engine(engine_id: str, model: str, **overrides: object) -> EngineConfig:
    """A vllm engine serving a catalog model by its catalog name."""
    settings: dict[str, object] = {"id": engine_id, "kind": "vllm", "model": model, "port": 8101}
    settings.update(overrides)
    return EngineConfig(**settings)  # type: ignore[arg-type]
