"""Real vLLM (its CPU build) under the real appliance, over a tiny model the tests build.

These tests run in the real-vLLM environment (`bash .ci/setup-vllm.sh`, then
`.venv-vllm/bin/python -m pytest tests/vllm`); the core test run does not collect them
(`norecursedirs` in pyproject.toml). Engines are slow to start on CPU (about 30 s), so one
appliance with one engine serves the whole session; tests that end it run last.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from appliance.tiny_model import build
from tests.support.running import SHIPPED, Appliance, free_port

ENGINE_ID = "tiny-llama"
MODEL = "tiny-llama"
START_TIMEOUT_S = 300.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that end the shared appliance run after all others."""
    items.sort(key=lambda item: item.get_closest_marker("ends_appliance") is not None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ends_appliance: stops the session's appliance")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("models") / "tiny-llama", seed=0)


def cpu_config(directory: Path, model: Path) -> tuple[Path, int, int]:
    """The shipped `cpu` profile over `model`, on free ports, scheduled benchmarks off.

    Returns the file, the appliance's port and the engine's port.
    """
    text = SHIPPED.read_text()
    text = text.replace('profile = "sim"', 'profile = "cpu"', 1)
    text, found = re.subn(
        r"(?m)^(\[bench\]\n(?:[^\[\n].*\n|\n)*?)enabled = true$",
        r"\1enabled = false",
        text,
        count=1,
    )
    assert found == 1
    app_port, engine_port = free_port(), free_port()
    text = text.replace("port = 8000", f"port = {app_port}", 1)
    text = text.replace('data_dir = "var"', f'data_dir = "{directory / "var"}"', 1)
    text = text.replace('model = "./var/models/tiny-llama"', f'model = "{model}"', 1)
    text = re.sub(r"(?m)^port = 8111$", f"port = {engine_port}", text, count=1)
    path = directory / "models.toml"
    path.write_text(text)
    return path, app_port, engine_port


class VllmAppliance(Appliance):
    """The appliance on the `cpu` profile, and the real engine it runs."""

    def __init__(self, config: Path, port: int, engine_port: int) -> None:
        super().__init__(config, port)
        self.engine_port = engine_port
        self.engine_url = f"http://127.0.0.1:{engine_port}"

    def start(self, *, wait: bool = True, timeout: float = START_TIMEOUT_S) -> VllmAppliance:
        super().start(wait=wait, timeout=timeout)
        return self

    def engine_pid(self) -> int:
        pid = self.engines()[ENGINE_ID]["pid"]
        assert isinstance(pid, int)
        return pid

    def tree(self) -> list[psutil.Process]:
        """The appliance's descendants: the engine, its EngineCore and workers, the guard."""
        assert self.proc is not None
        return psutil.Process(self.proc.pid).children(recursive=True)


def start_appliance(directory: Path, model: Path) -> VllmAppliance:
    config, port, engine_port = cpu_config(directory, model)
    return VllmAppliance(config, port, engine_port).start()


@pytest.fixture(scope="session")
def appliance(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[VllmAppliance]:
    running = start_appliance(tmp_path_factory.mktemp("appliance"), tiny_model)
    try:
        yield running
    finally:
        tree = running.tree() if running.proc and running.proc.poll() is None else []
        running.stop(timeout=60)
        for proc in tree:  # never leave an engine behind, whatever a test did
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
