"""vLLM engines end to end through a fake `vllm`: the exact command and environment each engine
gets from its plan, then the supervisor's whole lifecycle against real processes.

The fake (tests/support/fake_vllm/vllm) is put first on PATH; it records its arguments and
environment and then serves as the appliance's simulator in the same process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import openai
import pytest

from appliance.config import load_config
from appliance.engines.health import HttpHealthProbe
from appliance.engines.process import SubprocessSpawner
from appliance.engines.registry import build_engines, new_internal_api_key
from appliance.engines.states import EngineState as S
from appliance.engines.supervisor import RestartPolicy, Supervisor
from appliance.placement import check_plan
from tests.support.changes import without_repeats
from tests.support.running import free_port, pid_alive

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FAKE_VLLM = ROOT / "tests" / "support" / "fake_vllm" / "vllm"
POLICY = RestartPolicy(
    backoff_initial_s=0.1,
    backoff_max_s=0.5,
    startsecs=30.0,
    max_fast_failures=3,
    health_interval_s=0.2,
    unhealthy_after=3,
    stop_grace_s=5.0,
    start_poll_s=0.05,
    probe_timeout_s=2.0,
)
QWEN_14B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 5120,
    "intermediate_size": 13824,
    "num_attention_heads": 40,
    "num_hidden_layers": 48,
    "num_key_value_heads": 8,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
    "torch_dtype": "bfloat16",
}
PROFILE = """
[profiles.vllm-fake]
description = "vLLM engines on declared GPUs, launched through a fake vllm"
gpus = "2xA100-80GB"
default_model = "llama-3.1-70b-instruct"
agents.kai = {{ model = "llama-3.1-70b-instruct", fallbacks = ["llama-3.1-8b-instruct"] }}
agents.guardrail = {{ model = "llama-3.1-8b-instruct" }}
agents.genetic = {{ model = "qwen-local" }}
agents.wellness = {{ model = "llama-3.1-70b-instruct" }}

[[profiles.vllm-fake.engines]]
id = "llama-70b"
kind = "vllm"
model = "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4"
served_name = "llama-3.1-70b-instruct"
port = {p70}
quantization = "awq"
tensor_parallel_size = 2
gpus = [0, 1]
gpu_memory_utilization = 0.50
max_model_len = 8192
max_num_seqs = 8

[[profiles.vllm-fake.engines]]
id = "qwen-local"
kind = "vllm"
model = "{local}"
served_name = "qwen-local"
aliases = ["genetic-model"]
port = {plocal}
dtype = "bfloat16"
enable_prefix_caching = false
max_model_len = 8192
max_num_seqs = 4
extra_args = ["--trust-remote-code"]

[[profiles.vllm-fake.engines]]
id = "llama-8b"
kind = "vllm"
model = "meta-llama/Llama-3.1-8B-Instruct"
served_name = "llama-3.1-8b-instruct"
port = {p8}
quantization = "fp8"
max_model_len = 4096
max_num_seqs = 16
startup_timeout_s = 120
"""


async def until(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def fake_vllm_on_path(tmp_path, monkeypatch) -> Path:
    record = tmp_path / "vllm-calls.jsonl"
    monkeypatch.setenv("PATH", f"{FAKE_VLLM.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_VLLM_PYTHON", sys.executable)
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    return record


@pytest.fixture
def config(tmp_path):
    local = tmp_path / "models" / "qwen-14b"
    local.mkdir(parents=True)
    (local / "config.json").write_text(json.dumps(QWEN_14B))
    ports = {"p70": free_port(), "plocal": free_port(), "p8": free_port()}
    text = (ROOT / "models.toml").read_text().replace('profile = "sim"', 'profile = "vllm-fake"', 1)
    path = tmp_path / "models.toml"
    path.write_text(text + PROFILE.format(local=local, **ports))
    return load_config(path, env={})


@pytest.fixture
async def supervisor_of() -> AsyncIterator[Callable[..., Supervisor]]:
    made: list[Supervisor] = []

    def make(specs) -> Supervisor:
        sup = Supervisor(specs, spawner=SubprocessSpawner(), probe=HttpHealthProbe(), policy=POLICY)
        made.append(sup)
        return sup

    yield make
    for sup in made:
        await asyncio.wait_for(sup.stop(), 60)


async def test_vllm_engines_launch_exactly_and_live_their_whole_lifecycle(
    fake_vllm_on_path, config, supervisor_of
):
    record_file = fake_vllm_on_path
    plan = check_plan(config, gpus="2xA100-80GB")
    key = new_internal_api_key()
    endpoints, specs = build_engines(config, key, plan)
    by_id = {spec.engine_id: spec for spec in specs}
    ports = {e.id: e.port for e in config.engines}
    local = config.engine_for("qwen-local").model
    qwen, small = plan.engine("qwen-local"), plan.engine("llama-8b")
    assert qwen is not None and small is not None
    assert (qwen.gpus, small.gpus) == ((0,), (1,))  # the planner put them on separate GPUs
    expected_argv = {
        "llama-70b": [
            "serve", "hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4",
            "--served-model-name", "llama-3.1-70b-instruct",
            "--host", "127.0.0.1", "--port", str(ports["llama-70b"]),
            "--tensor-parallel-size", "2", "--gpu-memory-utilization", "0.50",
            "--max-model-len", "8192", "--max-num-seqs", "8", "--max-log-len", "0",
            "--enable-prefix-caching",
            "--generation-config", "vllm", "--disable-access-log-for-endpoints", "/health,/metrics",
            "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}',
        ],
        "qwen-local": [
            "serve", local,
            "--served-model-name", "qwen-local", "genetic-model",
            "--host", "127.0.0.1", "--port", str(ports["qwen-local"]),
            "--tensor-parallel-size", "1",
            "--gpu-memory-utilization", f"{qwen.gpu_memory_utilization:.2f}",
            "--max-model-len", "8192", "--max-num-seqs", "4", "--max-log-len", "0",
            "--dtype", "bfloat16", "--no-enable-prefix-caching",
            "--generation-config", "vllm", "--disable-access-log-for-endpoints", "/health,/metrics",
            "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}',
            "--trust-remote-code",
        ],
        "llama-8b": [
            "serve", "meta-llama/Llama-3.1-8B-Instruct",
            "--served-model-name", "llama-3.1-8b-instruct",
            "--host", "127.0.0.1", "--port", str(ports["llama-8b"]),
            "--tensor-parallel-size", "1",
            "--gpu-memory-utilization", f"{small.gpu_memory_utilization:.2f}",
            "--max-model-len", "4096", "--max-num-seqs", "16", "--max-log-len", "0",
            "--quantization", "fp8", "--enable-prefix-caching",
            "--generation-config", "vllm", "--disable-access-log-for-endpoints", "/health,/metrics",
            "--structured-outputs-config", '{"backend":"guidance","disable_any_whitespace":true}',
        ],
    }  # fmt: skip
    devices = {"llama-70b": "0,1", "qwen-local": "0", "llama-8b": "1"}
    for engine_id, spec in by_id.items():
        assert spec.argv[0] == str(FAKE_VLLM)
        assert list(spec.argv[1:]) == expected_argv[engine_id]
        assert key not in spec.argv
    assert by_id["llama-8b"].startup_timeout_s == 120.0
    assert by_id["llama-70b"].startup_timeout_s == 1800.0

    sup = supervisor_of(specs)
    seen: list[tuple[str, str]] = []
    sup.on_change(lambda s: seen.append((s.engine_id, str(s.state))))
    await asyncio.wait_for(sup.start(), 180)

    # Start order: one after another, each RUNNING before the next starts.
    order = [e.id for e in config.engines]
    # A slow health check on a running engine while the next one boots reports RUNNING again.
    assert without_repeats(seen) == [
        (engine, state) for engine in order for state in ("STARTING", "RUNNING")
    ]
    calls = records(record_file)
    assert [c["argv"] for c in calls] == [expected_argv[e] for e in order]
    pids = {engine_id: status.pid for engine_id, status in sup.status().items()}
    for call, engine_id in zip(calls, order, strict=True):
        env = call["env"]
        assert call["pid"] == pids[engine_id]  # the recorded process is the one supervised
        assert env["VLLM_API_KEY"] == key
        assert env["CUDA_VISIBLE_DEVICES"] == devices[engine_id]
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert env["VLLM_NO_USAGE_STATS"] == "1" and env["DO_NOT_TRACK"] == "1"
        offline = engine_id == "qwen-local"
        assert ("HF_HUB_OFFLINE" in env) is offline and ("TRANSFORMERS_OFFLINE" in env) is offline
        if offline:
            assert env["HF_HUB_OFFLINE"] == "1" and env["TRANSFORMERS_OFFLINE"] == "1"

    # Readiness: each engine answers on loopback, behind the internal key, under its names.
    for endpoint in endpoints:
        async with openai.AsyncOpenAI(base_url=endpoint.base_url, api_key=key) as client:
            models = await client.models.list()
        assert [m.id for m in models.data] == list(endpoint.names)
    async with openai.AsyncOpenAI(base_url=endpoints[2].base_url, api_key=key) as client:
        reply = await client.chat.completions.create(
            model="llama-3.1-8b-instruct",
            messages=[{"role": "user", "content": "ping"}],
            max_tokens=4,
        )
    assert reply.choices[0].message.content

    # Crash: SIGKILL one engine; it comes back with the same command and environment.
    os.kill(pids["llama-8b"], signal.SIGKILL)
    await until(
        lambda: sup.status()["llama-8b"].state is S.RUNNING and sup.status()["llama-8b"].restarts
    )
    again = sup.status()["llama-8b"]
    assert again.restarts == 1 and again.pid != pids["llama-8b"]
    assert again.last_error == "killed by SIGKILL"
    assert not pid_alive(pids["llama-8b"])
    calls = records(record_file)
    assert len(calls) == 4
    assert calls[3]["pid"] == again.pid
    assert calls[3]["argv"] == expected_argv["llama-8b"]
    assert calls[3]["env"]["CUDA_VISIBLE_DEVICES"] == "1"
    for engine_id in ("llama-70b", "qwen-local"):
        assert sup.status()[engine_id].pid == pids[engine_id]  # the others were not touched

    # Group stop: every engine process ends.
    running = [status.pid for status in sup.status().values()]
    await asyncio.wait_for(sup.stop(), 60)
    assert all(pid is not None and not pid_alive(pid) for pid in running)
    assert {status.state for status in sup.status().values()} == {S.STOPPED}
