"""Broken configurations and environment values, through `config validate` and `serve` as real
processes: each exits 2 with exactly one line on stderr and no traceback, from both commands.

`validate` runs the same checks as `serve` short of starting anything, so no configuration passes
one and fails the other.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.running import sim_config

pytestmark = pytest.mark.integration

# A profile whose one vLLM engine asks for more GPUs than the profile declares.
TP_PROFILE = """
[profiles.tp]
gpus = "1xA100-80GB"
default_model = "llama-3.1-8b-instruct"
agents.kai = { model = "llama-3.1-8b-instruct" }
agents.guardrail = { model = "llama-3.1-8b-instruct" }
agents.genetic = { model = "llama-3.1-8b-instruct" }
agents.wellness = { model = "llama-3.1-8b-instruct" }

[[profiles.tp.engines]]
id = "small"
kind = "vllm"
model = "meta-llama/Llama-3.1-8B-Instruct"
served_name = "llama-3.1-8b-instruct"
port = 8201
tensor_parallel_size = 2
gpus = [0, 1]
"""


@dataclass(frozen=True)
class Case:
    name: str
    # In stderr's one line: what names the fault.
    expect: str
    env: dict[str, str] = field(default_factory=dict)
    replace: dict[str, str] = field(default_factory=dict)
    extra: str = ""
    args: tuple[str, ...] = ()
    # Changes the written config directory before the run (e.g. a file where a directory goes).
    prepare: Callable[[Path], None] | None = None
    use_config_flag: bool = True


def _data_dir_is_a_file(directory: Path) -> None:
    (directory / "var").write_text("not a directory\n")


def _store_not_a_database(directory: Path) -> None:
    (directory / "var").mkdir()
    (directory / "var" / "bench.sqlite3").write_bytes(b"this is not SQLite" * 100)


def _store_from_the_future(directory: Path) -> None:
    (directory / "var").mkdir()
    with sqlite3.connect(directory / "var" / "bench.sqlite3") as conn:
        conn.execute("PRAGMA user_version = 999")


CASES = [
    Case("timeout not a number", "LLM_TIMEOUT", env={"LLM_TIMEOUT": "abc"}),
    Case("timeout infinite", "LLM_TIMEOUT", env={"LLM_TIMEOUT": "inf"}),
    Case("timeout not a number (nan)", "LLM_TIMEOUT", env={"LLM_TIMEOUT": "nan"}),
    Case("timeout negative", "LLM_TIMEOUT", env={"LLM_TIMEOUT": "-1"}),
    Case("timeout zero", "LLM_TIMEOUT", env={"LLM_TIMEOUT": "0"}),
    Case("retries not an integer", "LLM_MAX_RETRIES", env={"LLM_MAX_RETRIES": "2.5"}),
    Case("retries too many", "LLM_MAX_RETRIES", env={"LLM_MAX_RETRIES": "99"}),
    Case("retry delay -inf", "LLM_RETRY_DELAY", env={"LLM_RETRY_DELAY": "-inf"}),
    Case(
        "breaker threshold zero",
        "LLM_CIRCUIT_BREAKER_THRESHOLD",
        env={"LLM_CIRCUIT_BREAKER_THRESHOLD": "0"},
    ),
    Case(
        "breaker timeout nan",
        "LLM_CIRCUIT_BREAKER_TIMEOUT",
        env={"LLM_CIRCUIT_BREAKER_TIMEOUT": "nan"},
    ),
    Case("unknown profile from env", "profile", env={"APPLIANCE_PROFILE": "nope"}),
    Case(
        "missing config file from env",
        "no such file",
        env={"APPLIANCE_CONFIG": "/nonexistent/models.toml"},
        use_config_flag=False,
    ),
    Case("base URL not http", "LLM_BASE_URL", env={"LLM_BASE_URL": "ftp://example.invalid"}),
    Case("agent model not served", "KAI_AGENT_MODEL", env={"KAI_AGENT_MODEL": "no-such-model"}),
    Case("default model not served", "LLM_MODEL", env={"LLM_MODEL": "no-such-model"}),
    Case("not TOML", "valid TOML", extra="this is = = not toml\n"),
    Case("unknown section key", "unknown field", replace={"[server]\n": "[server]\ncolour = 1\n"}),
    Case(
        "port zero",
        "server.port",
        replace={"port = 8000": "port = 0"},
    ),
    Case("log level unknown", "log_level", replace={'log_level = "info"': 'log_level = "loud"'}),
    Case(
        "grace negative",
        "shutdown_grace_s",
        replace={"shutdown_grace_s = 10.0": "shutdown_grace_s = -1.0"},
    ),
    Case(
        "grace infinite",
        "shutdown_grace_s",
        replace={"shutdown_grace_s = 10.0": "shutdown_grace_s = inf"},
    ),
    Case("file timeout nan", "llm.timeout", replace={"timeout = 30.0": "timeout = nan"}),
    Case("unknown locale", "safety", replace={'locale = "en-US"': 'locale = "xx-XX"'}),
    Case("data_dir is a file", "server.data_dir", prepare=_data_dir_is_a_file),
    Case("benchmark store not a database", "bench.db_file", prepare=_store_not_a_database),
    Case("benchmark store from a newer version", "newer appliance", prepare=_store_from_the_future),
    Case(
        "tensor parallel beyond the GPUs",
        "profiles.tp",
        extra=TP_PROFILE,
        args=("--profile", "tp"),
    ),
    Case(
        "cron out of range",
        "bench.nightly_cron",
        replace={'nightly_cron = "0 3 * * *"': 'nightly_cron = "61 3 * * *"'},
    ),
    Case(
        "listening beyond loopback without a key",
        "server.host",
        replace={'host = "127.0.0.1"': 'host = "0.0.0.0"'},
    ),
    Case("example-only profile", "profiles.guide-budget", args=("--profile", "guide-budget")),
    Case("engine kind unknown", "kind", replace={'kind = "sim"': 'kind = "quantum"'}),
    Case(
        "agent model not served in the file",
        "agents.kai",
        replace={
            'agents.kai = { model = "llama-3.1-70b-instruct"': 'agents.kai = { model = "nope"'
        },
    ),
]


def _write(case: Case, directory: Path) -> Path:
    path, _ = sim_config(directory, replace=case.replace, extra=case.extra, benchmarks=True)
    if case.prepare is not None:
        case.prepare(directory)
    return path


def _run(command: list[str], case: Case, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_", "APPLIANCE_"))}
    env.update(case.env)
    args = [*command, *(("--config", str(config)) if case.use_config_flag else ()), *case.args]
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=config.parent,
    )


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 25
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest.mark.parametrize("command", [["config", "validate"], ["serve"]], ids=["validate", "serve"])
def test_a_broken_configuration_is_one_line_and_exit_2(
    case: Case, command: list[str], tmp_path: Path
) -> None:
    config = _write(case, tmp_path)
    try:
        done = _run(command, case, config)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} kept running with a broken configuration ({case.name})")
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("appliance: configuration error: "), lines[0]
    assert case.expect in lines[0], lines[0]


def test_a_bad_variable_does_not_break_help() -> None:
    env = {**os.environ, "LLM_TIMEOUT": "abc", "LLM_MAX_RETRIES": "many"}
    for args in (["--help"], ["check", "--help"], ["serve", "--help"], ["bench", "run", "--help"]):
        done = subprocess.run(
            [sys.executable, "-m", "appliance.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, (args, done.stderr)
        assert "usage:" in done.stdout


def test_check_reads_its_timeout_when_it_runs() -> None:
    env = {**os.environ, "LLM_TIMEOUT": "inf"}
    done = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "check", "--base-url", "http://127.0.0.1:9/v1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "appliance: configuration error: environment variable LLM_TIMEOUT: "
        "expected a finite number, got 'inf'"
    ]
