"""The appliance end to end: real `appliance serve`, real simulator engines, the real openai client."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.running import Appliance, pid_alive, sim_config, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    config, port = sim_config(tmp_path_factory.mktemp("appliance"), time_scale=0.01)
    with Appliance(config, port) as running:
        yield running


@pytest.fixture
def client(appliance: Appliance) -> openai.OpenAI:
    return openai.OpenAI(base_url=appliance.base_url + "/v1", api_key="test", max_retries=0)


def test_models_lists_the_four_agents_default_and_served_models(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list().data]
    assert ids[:5] == ["kai", "guardrail", "genetic", "wellness", "default"]
    assert {"llama-3.1-70b-instruct", "llama-3.1-8b-instruct", "qwen-2.5-32b-instruct"} <= set(ids)


def test_chat_with_kai(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="kai", messages=[{"role": "user", "content": "How do I wind down tonight?"}]
    )
    assert reply.model == "llama-3.1-70b-instruct"
    assert reply.choices[0].message.content.startswith("[simulated] ")
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 150  # kai's max_tokens


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="kai",
            messages=[{"role": "user", "content": "Tell me something calm."}],
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=12,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("[simulated]")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens <= 12
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_served_name_and_default(client: openai.OpenAI) -> None:
    by_name = client.chat.completions.create(
        model="llama-3.1-8b-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert by_name.model == "llama-3.1-8b-instruct"
    default = client.chat.completions.create(
        model="default", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    assert default.model == "llama-3.1-70b-instruct"


def test_json_schema_passes_through(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"mood": {"type": "string", "enum": ["calm", "tense"]}},
        "required": ["mood"],
    }
    reply = client.chat.completions.create(
        model="genetic",
        messages=[{"role": "user", "content": "Classify my mood."}],
        response_format={"type": "json_schema", "json_schema": {"name": "m", "schema": schema}},
    )
    assert reply.choices[0].message.content == '{"mood":"calm"}'


def test_bad_requests_get_openai_shaped_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as empty:
        client.chat.completions.create(model="kai", messages=[])
    assert empty.value.body["type"] == "invalid_request_error"


def test_health_is_the_guides_json(appliance: Appliance) -> None:
    response = appliance.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert body["version"] == "0.1.0"
    assert set(body["llm"]) == {
        "status",
        "latency_ms",
        "models_available",
        "circuit_breaker_state",
        "circuit_breaker_failures",
    }
    assert body["llm"]["models_available"] == 3
    assert body["llm"]["circuit_breaker_state"] == "closed"
    assert {e["state"] for e in body["engines"].values()} == {"RUNNING"}
    assert appliance.get("/schema/openapi.json").json()["info"]["title"] == "Kai LLM appliance"


def test_an_engine_killed_with_sigkill_is_restarted(
    appliance: Appliance, client: openai.OpenAI
) -> None:
    before = appliance.engines()["llama-8b"]
    import os

    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(
        lambda: (
            (e := appliance.engines()["llama-8b"])["restarts"] == before["restarts"] + 1
            and e["state"] == "RUNNING"
            and e
        )
    )
    assert after["pid"] != before["pid"]
    assert not pid_alive(before["pid"])
    reply = client.chat.completions.create(
        model="guardrail", messages=[{"role": "user", "content": "hello"}], max_tokens=4
    )
    assert reply.model == "llama-3.1-8b-instruct"


def test_sigterm_leaves_no_engine_behind(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path)
    app = Appliance(config, port).start()
    pids = [engine["pid"] for engine in app.engines().values()]
    assert len(pids) == 3 and all(pid_alive(pid) for pid in pids)
    app.stop(signal.SIGTERM)
    assert not [pid for pid in pids if pid_alive(pid)]


def test_sigkill_of_the_appliance_takes_the_engines_along(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path)
    app = Appliance(config, port).start()
    pids = [engine["pid"] for engine in app.engines().values()]
    app.stop(signal.SIGKILL)
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=10)


def test_an_engine_that_never_becomes_healthy_ends_fatal(tmp_path: Path) -> None:
    config, port = sim_config(
        tmp_path,
        engine_settings={"qwen-32b": "startup_timeout_s = 0.5\nsim.slow_start_s = 60"},
    )
    with Appliance(config, port) as app:
        health = app.wait_ready(timeout=60)
        qwen = health["engines"]["qwen-32b"]
        assert qwen["state"] == "FATAL"
        assert "healthy" in qwen["last_error"]
        assert health["status"] == "degraded"
        assert app.get("/health").status_code == 200
        client = openai.OpenAI(base_url=app.base_url + "/v1", api_key="t", max_retries=0)
        # Genetic's primary is the dead engine: its fallback answers.
        reply = client.chat.completions.create(
            model="genetic", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.model == "llama-3.1-8b-instruct"
        # The dead engine by name: a clear 503 with Retry-After, no hang.
        with pytest.raises(openai.InternalServerError) as info:
            client.chat.completions.create(
                model="qwen-2.5-32b-instruct", messages=[{"role": "user", "content": "hi"}]
            )
        assert info.value.status_code == 503
        assert info.value.response.headers["retry-after"]


def test_appliance_check_passes_against_the_appliance(appliance: Appliance) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "check",
            "--base-url",
            appliance.base_url + "/v1",
            "--samples",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 passed, 0 failed" in result.stdout


def test_appliance_check_fails_when_nothing_listens() -> None:
    from tests.support.running import free_port

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "check",
            "--base-url",
            f"http://127.0.0.1:{free_port()}/v1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "FAIL  connectivity" in result.stdout


def test_serve_runs_benchmarks_through_its_own_api(tmp_path: Path) -> None:
    config, port = sim_config(tmp_path, benchmarks=True)
    with Appliance(config, port) as app:
        assert app.get("/benchmarks").json()["data"] == []
        started = app.post(
            "/benchmarks",
            json={"kind": "run", "agents": ["guardrail"], "requests": 4, "mix": False},
        )
        assert started.status_code == 202, started.text
        run_id = started.json()["id"]
        run = wait_for(
            lambda: (r := app.get(f"/benchmarks/{run_id}").json())["status"] != "running" and r,
            timeout=60,
        )
        assert run["status"] == "completed", run
        report = app.get(f"/benchmarks/{run_id}/report", params={"format": "md"})
        assert report.status_code == 200 and "guardrail" in report.text
