"""Configuration: `models.toml` plus the service guide's environment variables."""

from appliance.config.load import ENV_VARS, default_config_path, load_config, read_raw
from appliance.config.schema import AGENTS, AgentConfig, Config, EngineConfig, SimSettings

__all__ = [
    "AGENTS",
    "ENV_VARS",
    "AgentConfig",
    "Config",
    "EngineConfig",
    "SimSettings",
    "default_config_path",
    "load_config",
    "read_raw",
]
