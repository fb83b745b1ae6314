"""A stand for the agent routes: three simulator engines the test owns, and the real appliance.

The engines are plain `python -m appliance.simulator` processes on free ports with a known key, and
the appliance reaches them as `external` engines. So a test can break an engine with `/sim/faults`,
or kill it and know it stays dead (no supervisor brings it back), and the appliance is started as
`appliance serve` on a temporary models.toml, its stderr kept at DEBUG for the privacy check.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai

from tests.support.running import SHIPPED, Appliance, free_port

KEY = "stand-engine-key"
MODELS = {
    "llama-70b": "llama-3.1-70b-instruct",
    "llama-8b": "llama-3.1-8b-instruct",
    "qwen-32b": "qwen-2.5-32b-instruct",
}
STARTUP_DEADLINE_S = 60.0


@dataclass
class Engine:
    engine_id: str
    model: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def faults(self, **patch: Any) -> dict[str, Any]:
        """Change the engine's fault knobs (`error_next`, `malformed_next`, `error_rate`, ...)."""
        response = httpx2.post(
            f"{self.root}/sim/faults",
            json=patch,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Stand:
    directory: Path
    engines: dict[str, Engine] = field(default_factory=dict)
    appliance: Appliance | None = None
    # Every user text the tests sent, for the check that none reached the logs.
    sent: list[str] = field(default_factory=list)
    # Everything logged in the test process meanwhile, at DEBUG (the openai client, httpx2, ...).
    captured: list[str] = field(default_factory=list)
    _handler: logging.Handler | None = None
    _root_level: int = logging.WARNING

    def capture_logs(self) -> None:
        stand = self

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                stand.captured.append(self.format(record))

        root = logging.getLogger()
        self._handler, self._root_level = Collect(logging.DEBUG), root.level
        self._handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        root.addHandler(self._handler)
        root.setLevel(logging.DEBUG)

    def logs(self) -> str:
        """The appliance's stderr and the test process's own log records."""
        return self.app.log() + "\n".join(self.captured)

    @property
    def app(self) -> Appliance:
        assert self.appliance is not None
        return self.appliance

    def post(self, path: str, body: dict[str, Any]) -> httpx2.Response:
        return self.app.post(path, json=body)

    def converse(self, message: str, **extra: Any) -> httpx2.Response:
        self.sent.append(message)
        return self.post("/v1/converse", {"message": message, **extra})

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"{self.app.base_url}/v1", api_key="unused", max_retries=0, timeout=60
        )

    def all_faults(self, **patch: Any) -> None:
        for engine in self.engines.values():
            if engine.alive():
                engine.faults(**patch)

    def reset(self) -> None:
        """Faults off and breakers closed, so the next test starts from a healthy stand."""
        self.all_faults(
            error_rate=0.0, stall_rate=0.0, malformed_rate=0.0,
            error_next=0, stall_next=0, malformed_next=0,
        )  # fmt: skip
        self.app.post("/admin/breakers/reset").raise_for_status()

    def breakers(self) -> dict[str, str]:
        engines = self.app.get("/health/detailed").json()["engines"]
        return {engine: view["circuit_breaker"]["state"] for engine, view in engines.items()}

    def stop(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
            logging.getLogger().setLevel(self._root_level)
            self._handler = None
        if self.appliance is not None:
            self.appliance.stop()
        for engine in self.engines.values():
            engine.kill()


def start_stand(directory: Path, *, settings: str = "") -> Stand:
    """Engines first (healthy), then the appliance on them; `settings` replaces TOML sections."""
    stand = Stand(directory)
    stand.capture_logs()
    try:
        for engine_id, model in MODELS.items():
            stand.engines[engine_id] = _start_engine(directory, engine_id, model)
        for engine in stand.engines.values():
            _wait_healthy(engine)
        config, port = _write_config(directory, stand.engines, settings)
        stand.appliance = Appliance(config, port).start(timeout=STARTUP_DEADLINE_S)
    except BaseException:
        stand.stop()
        raise
    return stand


def _start_engine(directory: Path, engine_id: str, model: str) -> Engine:
    port = free_port()
    log = directory / f"{engine_id}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance.simulator", model, "--port", str(port),
             "--api-key", KEY, "--time-scale", "0.01", "--uvicorn-log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Engine(engine_id, model, port, process, log)


def _wait_healthy(engine: Engine) -> None:
    deadline = time.monotonic() + STARTUP_DEADLINE_S
    while time.monotonic() < deadline:
        assert engine.alive(), engine.log.read_text()
        try:
            if httpx2.get(f"{engine.root}/health", timeout=5).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"engine {engine.engine_id} not healthy:\n{engine.log.read_text()}")


# The sections the stand replaces in the shipped models.toml; `settings` may override any of them.
_SECTIONS = {
    "llm": "timeout = 20.0\nmax_retries = 1\nretry_delay = 0.01\n"
    "circuit_breaker_threshold = 3\ncircuit_breaker_timeout = 600.0\n",
    "safety": 'locale = "en-US"\nguardrail_unavailable = "fail_closed"\ncheck_reply = true\n'
    "max_message_chars = 2000\nmax_history_turns = 6\nguardrail_timeout_s = 3.0\n"
    "reply_timeout_s = 20.0\nanalysis_timeout_s = 20.0\n",
}


def _write_config(directory: Path, engines: dict[str, Engine], settings: str) -> tuple[Path, int]:
    text = SHIPPED.read_text()
    port = free_port()
    text = text.replace('profile = "sim"', 'profile = "stand"', 1)
    text = text.replace("port = 8000", f"port = {port}", 1)
    text = text.replace('data_dir = "var"', f'data_dir = "{directory / "var"}"', 1)
    sections = dict(_SECTIONS)
    for block in settings.strip().split("\n["):
        if block.strip():
            name, _, body = block.lstrip("[").partition("]\n")
            sections[name] = body
    for name, body in sections.items():
        text = _replace_section(text, name, body)
    profile = [
        "[profiles.stand]",
        'description = "Test stand: simulator engines reached as external engines"',
        'default_model = "llama-3.1-70b-instruct"',
        'agents.kai = { model = "llama-3.1-70b-instruct", fallbacks = ["llama-3.1-8b-instruct"] }',
        'agents.guardrail = { model = "llama-3.1-8b-instruct", fallbacks = ["qwen-2.5-32b-instruct"] }',
        'agents.genetic = { model = "qwen-2.5-32b-instruct", fallbacks = ["llama-3.1-8b-instruct"] }',
        'agents.wellness = { model = "llama-3.1-70b-instruct", fallbacks = ["qwen-2.5-32b-instruct"] }',
    ]
    for engine in engines.values():
        profile += [
            "",
            "[[profiles.stand.engines]]",
            f'id = "{engine.engine_id}"',
            'kind = "external"',
            f'model = "{engine.model}"',
            f'base_url = "{engine.root}/v1"',
            f'api_key = "{KEY}"',
        ]
    path = directory / "models.toml"
    path.write_text(text + "\n" + "\n".join(profile) + "\n")
    return path, port


def _replace_section(text: str, name: str, body: str) -> str:
    head = f"[{name}]\n"
    start = text.index(head) + len(head)
    end = text.index("\n[", start) + 1
    return text[:start] + body.strip() + "\n" + text[end:]
