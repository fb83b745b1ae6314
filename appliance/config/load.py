"""Load `models.toml`, apply the service guide's environment variables, check cross-references.

Every failure is a `ConfigError` naming the file (or variable), the key and what was expected, so
the CLI can print one line and exit 2 instead of a traceback.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect

from appliance.config.schema import (
    AGENTS,
    AgentConfig,
    AgentModels,
    CatalogEntry,
    Config,
    EngineConfig,
    LLMSettings,
    ProfileConfig,
    RawConfig,
)
from appliance.errors import ConfigError

DEFAULT_PATH = "models.toml"
T = TypeVar("T")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)

# Service-guide variable -> (LLMSettings field, type)
_LLM_VARS: dict[str, tuple[str, type]] = {
    "LLM_TIMEOUT": ("timeout", float),
    "LLM_MAX_RETRIES": ("max_retries", int),
    "LLM_RETRY_DELAY": ("retry_delay", float),
    "LLM_CIRCUIT_BREAKER_THRESHOLD": ("circuit_breaker_threshold", int),
    "LLM_CIRCUIT_BREAKER_TIMEOUT": ("circuit_breaker_timeout", float),
    "LLM_CA_FILE": ("ca_file", str),
}
AGENT_MODEL_VARS = {agent: f"{agent.upper()}_AGENT_MODEL" for agent in AGENTS}
ENV_VARS = (
    "LLM_BASE_URL",
    "LLM_API_KEY",
    "LLM_MODEL",
    *_LLM_VARS,
    *AGENT_MODEL_VARS.values(),
)


def default_config_path() -> str:
    return os.environ.get("APPLIANCE_CONFIG", DEFAULT_PATH)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Read, validate and resolve the configuration the appliance will run with."""
    env = os.environ if env is None else env
    file = str(path) if path is not None else default_config_path()
    raw = _read(file)
    chosen = profile or env.get("APPLIANCE_PROFILE") or raw.profile
    if chosen not in raw.profiles:
        raise ConfigError(file, "profile", f"one of {sorted(raw.profiles)}", got=repr(chosen))
    prof = raw.profiles[chosen]
    if prof.example_only:
        raise ConfigError(
            file,
            f"profiles.{chosen}",
            "a profile that can run; this one is kept as an example only "
            f"(see `appliance plan --profile {chosen}` for why)",
        )
    config = _resolve(file, raw, chosen, prof, env)
    from appliance.agents.budget import check_prompts_fit  # reads the agents' prompt files

    check_prompts_fit(config)
    return config


def read_raw(path: str | os.PathLike[str] | None = None) -> RawConfig:
    """The file as written, validated but not resolved (for planning every profile)."""
    return _read(str(path) if path is not None else default_config_path())


def _read(file: str) -> RawConfig:
    try:
        text = Path(file).read_bytes()
    except FileNotFoundError:
        raise ConfigError(file, "-", "an existing models.toml file", got="no such file") from None
    except OSError as exc:
        raise ConfigError(file, "-", "a readable file", got=exc.strerror or str(exc)) from None
    try:
        data = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "-", "UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", "valid TOML", got=str(exc)) from None
    _check_finite(file, data)
    _validate_entries(file, data)
    return _convert(file, data, RawConfig, "")


# Dict-valued sections whose entries are validated one by one, so errors name the entry's key
# (msgspec reports dict keys as `[...]`).
_ENTRY_TYPES: dict[str, type] = {
    "agents": AgentConfig,
    "catalog": CatalogEntry,
}


def _validate_entries(file: str, data: dict[str, Any]) -> None:
    for section, kind in _ENTRY_TYPES.items():
        for name, entry in _mapping(data.get(section)).items():
            _convert(file, entry, kind, f"{section}.{name}")
    for name, profile in _mapping(data.get("profiles")).items():
        prefix = f"profiles.{name}"
        if isinstance(profile, dict):
            for agent, choice in _mapping(profile.get("agents")).items():
                _convert(file, choice, AgentModels, f"{prefix}.agents.{agent}")
        _convert(file, profile, ProfileConfig, prefix)


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _convert(file: str, data: object, kind: type[T], prefix: str) -> T:
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        msg = match["msg"] if match and match["msg"] else str(exc)
        path = (match["path"] or "") if match else ""
        key = ".".join(p for p in (prefix, path.lstrip(".")) if p) or "-"
        raise ConfigError(file, key, _expectation(msg, kind, path)) from None


def _expectation(msg: str, kind: type | None = None, path: str = "") -> str:
    """msgspec says `Expected `int`, got `str``; keep it but drop the backticks.

    For an invalid choice it only names the bad value, so the allowed ones are looked up.
    """
    if msg.startswith("Invalid enum value") and kind is not None:
        choices = _literal_values(kind, path)
        if choices:
            allowed = ", ".join(repr(c) for c in choices)
            return f"expected one of {allowed}, got {msg.removeprefix('Invalid enum value ')}"
    return msg.replace("`", "").replace("Expected", "expected", 1)


def _literal_values(kind: type, path: str) -> tuple[Any, ...]:
    """The allowed values of the Literal field at a msgspec error path such as `.engines[0].kind`."""
    info: Any = msgspec.inspect.type_info(kind)
    for token in re.findall(r"\.([A-Za-z_][\w-]*)|\[[^\]]*\]", path):
        while isinstance(info, msgspec.inspect.UnionType):
            info = next(
                (t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info
            )
        if token and isinstance(info, msgspec.inspect.StructType):
            info = next((f.type for f in info.fields if f.encode_name == token), None)
        elif not token and hasattr(info, "item_type"):
            info = info.item_type
        elif not token and isinstance(info, msgspec.inspect.DictType):
            info = info.value_type
        if info is None:
            return ()
    while isinstance(info, msgspec.inspect.UnionType):
        info = next((t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)), info)
    return tuple(info.values) if isinstance(info, msgspec.inspect.LiteralType) else ()


def _resolve(
    file: str, raw: RawConfig, chosen: str, prof: ProfileConfig, env: Mapping[str, str]
) -> Config:
    llm = _llm_from_env(raw.llm, env)
    engines = prof.engines
    models = dict(prof.agents)
    default_model = prof.default_model

    base_url = env.get("LLM_BASE_URL", "").strip()
    if base_url:
        engines, models, default_model = _external_from_env(base_url, env)
        chosen = "external"
    else:
        if env.get("LLM_MODEL"):
            default_model = env["LLM_MODEL"]
        for agent, var in AGENT_MODEL_VARS.items():
            if env.get(var) and agent in models:
                models[agent] = msgspec.structs.replace(models[agent], model=env[var])

    _check_engines(file, chosen, engines)
    served = {name for e in engines for name in e.names}
    where = f"profiles.{chosen}"
    for agent in AGENTS:
        if agent not in raw.agents:
            raise ConfigError(file, f"agents.{agent}", "a section for each of the four agents")
        if agent not in models:
            raise ConfigError(
                file, f"{where}.agents.{agent}", "a model for each of the four agents"
            )
    for agent, choice in models.items():
        if agent not in AGENTS:
            raise ConfigError(file, f"{where}.agents.{agent}", f"one of {list(AGENTS)}")
        var = AGENT_MODEL_VARS[agent]
        for name in (choice.model, *choice.fallbacks):
            if name not in served:
                origin = var if env.get(var) == name else file
                key = var if origin == var else f"{where}.agents.{agent}"
                raise ConfigError(
                    origin, key, f"a model served by an engine: {sorted(served)}", got=repr(name)
                )
    for agent in raw.agents:
        if agent not in AGENTS:
            raise ConfigError(file, f"agents.{agent}", f"one of {list(AGENTS)}")
    if default_model not in served:
        origin = "LLM_MODEL" if env.get("LLM_MODEL") == default_model else file
        raise ConfigError(
            origin,
            "LLM_MODEL" if origin == "LLM_MODEL" else f"{where}.default_model",
            f"a model served by an engine: {sorted(served)}",
            got=repr(default_model),
        )
    agents: dict[str, AgentConfig] = {
        agent: msgspec.structs.replace(
            raw.agents[agent], model=models[agent].model, fallbacks=models[agent].fallbacks
        )
        for agent in AGENTS
    }
    return Config(
        source=file,
        profile=chosen,
        server=raw.server,
        llm=llm,
        security=raw.security,
        admission=raw.admission,
        safety=raw.safety,
        bench=raw.bench,
        default_model=default_model,
        gpus=prof.gpus,
        agents=agents,
        engines=engines,
        catalog=raw.catalog,
        profiles=raw.profiles,
    )


def _check_engines(file: str, profile: str, engines: tuple[EngineConfig, ...]) -> None:
    if not engines:
        raise ConfigError(file, f"profiles.{profile}.engines", "at least one engine")
    ids: set[str] = set()
    ports: set[int] = set()
    # Served name -> the engine that first serves it; later engines with the same name are its
    # replicas, and must serve the same model under the same names.
    names: dict[str, EngineConfig] = {}
    for i, engine in enumerate(engines):
        key = f"profiles.{profile}.engines[{i}]"
        if engine.id in ids:
            raise ConfigError(file, f"{key}.id", "a unique engine id", got=repr(engine.id))
        ids.add(engine.id)
        for name in engine.names:
            first = names.setdefault(name, engine)
            if first is not engine and (first.model, first.names) != (engine.model, engine.names):
                raise ConfigError(
                    file,
                    f"{key}.served_name",
                    f"a unique served name, or a replica of engine {first.id!r} (the same "
                    f"model {first.model!r} under the same names)",
                    got=name,
                )
        if engine.kind == "external":
            if not engine.base_url:
                raise ConfigError(file, f"{key}.base_url", "a URL for an external engine")
            if not engine.base_url.startswith(("http://", "https://")):
                raise ConfigError(
                    file, f"{key}.base_url", "an http:// or https:// URL", got=engine.base_url
                )
        else:
            if engine.port is None:
                raise ConfigError(file, f"{key}.port", f"a port for a {engine.kind} engine")
            if engine.port in ports:
                raise ConfigError(
                    file, f"{key}.port", "a port no other engine uses", got=str(engine.port)
                )
            ports.add(engine.port)


def _env_number(env: Mapping[str, str], var: str, kind: type) -> Any:
    """`var` as an int or a finite float; `inf` and `nan` are not durations or counts."""
    value = env[var]
    noun = "an integer" if kind is int else "a finite number"
    try:
        number = kind(value.strip())
    except ValueError:
        raise ConfigError(var, var, noun, got=repr(value)) from None
    if not math.isfinite(number):
        raise ConfigError(var, var, noun, got=repr(value))
    return number


def env_timeout(env: Mapping[str, str], default: float) -> float:
    """`LLM_TIMEOUT` checked as the configuration checks it, for commands without a config."""
    if not env.get("LLM_TIMEOUT", "").strip():
        return default
    return _llm_from_env(LLMSettings(timeout=default), env).timeout


def _check_finite(file: str, data: object, key: str = "") -> None:
    """TOML allows `inf` and `nan`; no setting means anything with them."""
    if isinstance(data, float) and not math.isfinite(data):
        raise ConfigError(file, key or "-", "a finite number", got=repr(data))
    if isinstance(data, dict):
        for name, value in data.items():
            _check_finite(file, value, f"{key}.{name}" if key else str(name))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            _check_finite(file, value, f"{key}[{i}]")


def _llm_from_env(llm: LLMSettings, env: Mapping[str, str]) -> LLMSettings:
    changes: dict[str, object] = {}
    for var, (field, kind) in _LLM_VARS.items():
        value = env.get(var)
        if value is None or value.strip() == "":
            continue
        changes[field] = value.strip() if kind is str else _env_number(env, var, kind)
    if not changes:
        return llm
    try:
        return msgspec.convert({**msgspec.to_builtins(llm), **changes}, LLMSettings)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        field = (match["path"] or "").lstrip(".") if match else ""
        var = next((v for v, (f, _) in _LLM_VARS.items() if f == field), "LLM_*")
        raise ConfigError(var, var, _expectation(match["msg"] if match else str(exc))) from None


def _external_from_env(
    base_url: str, env: Mapping[str, str]
) -> tuple[tuple[EngineConfig, ...], dict[str, AgentModels], str]:
    """`LLM_BASE_URL` alone: one external engine serving every agent's model."""
    if not base_url.startswith(("http://", "https://")):
        raise ConfigError(
            "LLM_BASE_URL", "LLM_BASE_URL", "an http:// or https:// URL", got=repr(base_url)
        )
    default_model = env.get("LLM_MODEL") or "default"
    agent_models = {a: env.get(v) or default_model for a, v in AGENT_MODEL_VARS.items()}
    aliases = tuple(sorted({m for m in agent_models.values() if m != default_model}))
    engine = EngineConfig(
        id="external",
        kind="external",
        model=default_model,
        aliases=aliases,
        base_url=base_url.rstrip("/"),
        api_key=env.get("LLM_API_KEY") or None,
    )
    models = {
        agent: AgentModels(
            model=model, fallbacks=(default_model,) if model != default_model else ()
        )
        for agent, model in agent_models.items()
    }
    return (engine,), models, default_model
