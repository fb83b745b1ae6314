"""A models.toml for load-control tests: a small profile of simulator engines, written out.

The agents' settings and expected table come from the shipped file; the profile (engines, agents'
models and fallbacks) and the `[admission]`, `[llm]` and `[security]` settings are the test's.
Scheduled benchmarks are off, so nothing but the test's own requests loads the engines.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.running import ROOT, free_port

AGENT_KEYS = ("max_tokens", "temperature", "top_p", "expected")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def table(name: str, values: Mapping[str, Any]) -> str:
    lines = [f"[{name}]", *(f"{k} = {toml_value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def stand_config(
    directory: Path,
    *,
    engines: Sequence[Mapping[str, Any]],
    agents: Mapping[str, tuple[str, Sequence[str]]],
    admission: Mapping[str, Any] | None = None,
    llm: Mapping[str, Any] | None = None,
    security: Mapping[str, Any] | None = None,
    time_scale: float = 1.0,
) -> tuple[Path, int]:
    """Write the file; engines are sim engines on free ports. Returns (file, appliance port)."""
    shipped = tomllib.loads((ROOT / "models.toml").read_text())
    port = free_port()
    parts = [
        'profile = "stand"\n',
        table(
            "server",
            {"host": "127.0.0.1", "port": port, "data_dir": str(directory / "var")},
        ),
        table("llm", {"timeout": 30.0, **(llm or {})}),
        table("security", {"api_keys_env": "APPLIANCE_API_KEYS", **(security or {})}),
        table("admission", dict(admission or {})),
        table("bench", {"enabled": False}),
    ]
    for agent, settings in shipped["agents"].items():
        parts.append(table(f"agents.{agent}", {k: settings[k] for k in AGENT_KEYS}))
    first_model = engines[0]["model"]
    profile: dict[str, Any] = {"description": "load-control test stand", "gpus": "none"}
    profile["default_model"] = first_model
    for agent, (model, fallbacks) in agents.items():
        profile[f"agents.{agent}"] = {"model": model, "fallbacks": list(fallbacks)}
    parts.append(table("profiles.stand", profile))
    for engine in engines:
        sim = {"time_scale": time_scale, **engine.get("sim", {})}
        fields = {k: v for k, v in engine.items() if k != "sim"}
        fields = {"kind": "sim", "port": free_port(), **fields}
        body = [f"{k} = {toml_value(v)}" for k, v in fields.items()]
        body += [f"sim.{k} = {toml_value(v)}" for k, v in sim.items()]
        parts.append("[[profiles.stand.engines]]\n" + "\n".join(body) + "\n")
    path = directory / "models.toml"
    path.write_text("\n".join(parts))
    return path, port
