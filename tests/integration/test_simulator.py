"""The simulator as a real process on loopback, driven by the real `openai` client."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import jsonschema
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.running import free_port

pytestmark = pytest.mark.integration

MODEL = "llama-3.1-8b-instruct"
KEY = "test-key"
SCHEMA = {
    "type": "object",
    "properties": {
        "risk": {"type": "string", "enum": ["none", "low", "high"]},
        "reasons": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
        "score": {"type": "integer", "minimum": 0, "maximum": 10},
        "details": {"$ref": "#/$defs/details"},
    },
    "required": ["risk", "reasons", "score"],
    "$defs": {"details": {"anyOf": [{"type": "string", "maxLength": 8}, {"type": "null"}]}},
    "additionalProperties": False,
}
STARTUP_DEADLINE_S = 30.0


@dataclass
class Sim:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str = KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.root}/v1", api_key=key, max_retries=0, timeout=30)

    def get(self, path: str, **kwargs: object) -> httpx2.Response:
        return httpx2.get(f"{self.root}{path}", timeout=10, **kwargs)  # type: ignore[arg-type]


def start(tmp_path: Path, *flags: str) -> Sim:
    port = free_port()
    log = tmp_path / f"sim-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "appliance.simulator", MODEL, "--port", str(port),
             "--api-key", KEY, "--time-scale", "0", *flags],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Sim(process, port, log)


def wait_healthy(sim: Sim) -> float:
    """Seconds until /health answers 200; fails if the process dies or the deadline passes."""
    started = time.monotonic()
    while time.monotonic() - started < STARTUP_DEADLINE_S:
        assert sim.process.poll() is None, sim.log.read_text()
        try:
            if sim.get("/health").status_code == 200:
                return time.monotonic() - started
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"no /health within {STARTUP_DEADLINE_S} s\n{sim.log.read_text()}")


def stop(sim: Sim) -> None:
    if sim.process.poll() is None:
        sim.process.terminate()
        try:
            sim.process.wait(10)
        except subprocess.TimeoutExpired:
            sim.process.kill()
            sim.process.wait(10)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    running = start(tmp_path_factory.mktemp("sim"), "--max-model-len", "4096")
    try:
        wait_healthy(running)
        yield running
    finally:
        stop(running)


def test_a_plain_answer(sim: Sim):
    answer = sim.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "I could not sleep last night."}],
        max_tokens=32,
    )
    assert answer.system_fingerprint == "appliance-sim"
    content = answer.choices[0].message.content
    assert content is not None and content.startswith("[simulated] ")
    assert answer.usage is not None and 19 <= answer.usage.completion_tokens <= 32
    assert "sleep last night" not in content


def test_a_stream_with_usage(sim: Sim):
    stream = sim.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
        max_tokens=48,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[simulated] ")
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length") and not any(finishes[:-1])
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert usage.completion_tokens == 1 + len(text.removeprefix("[simulated] ").split())
    assert usage.prompt_tokens == (2 + 4) + (1 + 4)
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_json_schema_answer_parses_and_validates(sim: Sim):
    answer = sim.client().chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Classify this message."}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "risk", "schema": SCHEMA, "strict": True},
        },
    )
    value = json.loads(answer.choices[0].message.content or "")
    jsonschema.validate(value, SCHEMA)
    assert value["risk"] == "none"


def test_models_and_the_synthetic_header(sim: Sim):
    response = sim.get("/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert response.headers["x-appliance-synthetic"] == "true"
    models = sim.client().models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_a_missing_key_is_refused_with_401(sim: Sim):
    with pytest.raises(openai.AuthenticationError):
        sim.client(key="wrong").chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        )
    assert sim.get("/v1/models").status_code == 401


def test_an_unknown_model_is_a_404(sim: Sim):
    with pytest.raises(openai.NotFoundError) as error:
        sim.client().chat.completions.create(
            model="gpt-imaginary", messages=[{"role": "user", "content": "Hi"}]
        )
    assert "gpt-imaginary" in str(error.value)


def test_metrics_show_vllm_names_and_counts(sim: Sim):
    def counted() -> dict[str, float]:
        text = sim.get("/metrics").text
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("model_name") == MODEL:
                    key = sample.name + sample.labels.get("finished_reason", "")
                    values[key] = values.get(key, 0.0) + sample.value
        return values

    before = counted()
    client = sim.client()
    usage = [
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=20
        ).usage
        for _ in range(3)
    ]
    after = counted()
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_count",
        "vllm:inter_token_latency_seconds_count",
        "vllm:request_time_per_output_token_seconds_count",
    ):
        assert name in after
    generated = sum(u.completion_tokens for u in usage if u)
    prompt = sum(u.prompt_tokens for u in usage if u)
    delta = {name: after[name] - before.get(name, 0.0) for name in after}
    assert delta["vllm:generation_tokens_total"] == generated
    assert delta["vllm:prompt_tokens_total"] == prompt
    assert delta["vllm:e2e_request_latency_seconds_count"] == 3
    assert delta["vllm:request_success_totalstop"] + delta["vllm:request_success_totallength"] == 3


def test_error_next_gives_one_500(sim: Sim):
    auth = {"Authorization": f"Bearer {KEY}"}
    url = f"{sim.root}/sim/faults"
    assert httpx2.post(url, json={"error_next": 1}, timeout=10).status_code == 401
    assert httpx2.post(url, json={"error_next": 1}, headers=auth, timeout=10).status_code == 200
    client = sim.client()
    messages = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    answer = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    assert httpx2.get(url, headers=auth, timeout=10).json()["error_next"] == 0


def test_crash_after_kills_the_process(tmp_path: Path):
    sim = start(tmp_path, "--crash-after", "2")
    try:
        wait_healthy(sim)
        client = sim.client()
        messages = [{"role": "user", "content": "Hi"}]
        client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
        assert sim.process.wait(10) == 1
        assert "crash-after reached" in sim.log.read_text()
    finally:
        stop(sim)


def test_a_slow_start_refuses_connections_until_the_model_is_loaded(tmp_path: Path):
    sim = start(tmp_path, "--slow-start-s", "2")
    try:
        with pytest.raises(httpx2.ConnectError):
            sim.get("/health")
        assert wait_healthy(sim) >= 1.5
        assert "simulating a model load" in sim.log.read_text()
    finally:
        stop(sim)


def test_sigterm_stops_it_cleanly(tmp_path: Path):
    sim = start(tmp_path)
    wait_healthy(sim)
    sim.process.terminate()
    sim.process.wait(10)
    log = sim.log.read_text()
    assert "ready: listening on" in log and "stopping" in log
    assert "Traceback" not in log
