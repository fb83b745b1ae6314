"""The supervisor running the real `vllm serve`: its command, readiness, output, metrics, restart."""

from __future__ import annotations

import threading
import time

import httpx2
import openai
import psutil

from appliance.config import load_config
from appliance.engines.registry import build_engines
from appliance.engines.states import EngineState
from appliance.monitor.engine_metrics import parse_load
from appliance.placement import check_plan
from tests.support.running import pid_alive, wait_for
from tests.vllm.conftest import ENGINE_ID, MODEL, START_TIMEOUT_S, VllmAppliance


def test_the_engine_runs_exactly_the_planned_command_and_is_ready(appliance: VllmAppliance):
    config = load_config(appliance.config, profile="cpu", env={})
    _, (spec,) = build_engines(config, "key", check_plan(config))
    engine = psutil.Process(appliance.engine_pid())
    cmdline = engine.cmdline()
    # `vllm` is a Python script: the kernel runs its interpreter with the script's path first.
    assert tuple(cmdline[-len(spec.argv) :]) == spec.argv
    assert "--structured-outputs-config" in spec.argv and "--enforce-eager" in spec.argv
    env = engine.environ()
    assert env["VLLM_CPU_KVCACHE_SPACE"] == spec.env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["VLLM_API_KEY"] and env["VLLM_API_KEY"] not in cmdline
    assert "CUDA_VISIBLE_DEVICES" not in spec.env

    status = appliance.engines()[ENGINE_ID]
    assert status["state"] == str(EngineState.RUNNING) and status["up"] is True
    assert httpx2.get(f"{appliance.engine_url}/health", timeout=10).status_code == 200
    # The engine's own output, captured line by line into the appliance's log.
    log = appliance.log()
    assert f"appliance.engine.{ENGINE_ID}:" in log
    assert "Application startup complete" in log
    # The internal key guards the engine's API.
    stranger = httpx2.get(f"{appliance.engine_url}/v1/models", timeout=10)
    assert stranger.status_code == 401


def test_the_real_engines_metrics_are_read_while_it_works(appliance: VllmAppliance):
    idle = parse_load(httpx2.get(f"{appliance.engine_url}/metrics", timeout=10).text)
    assert idle.running == 0 and idle.waiting == 0 and idle.kv_usage is not None

    # Straight to the engine with its internal key, so that admission control does not hold
    # requests back: six at once against max_num_seqs 4 also fill its waiting queue.
    key = psutil.Process(appliance.engine_pid()).environ()["VLLM_API_KEY"]
    client = openai.OpenAI(base_url=f"{appliance.engine_url}/v1", api_key=key, max_retries=0)
    seen: list[tuple[float | None, float | None, float | None]] = []
    done = threading.Event()

    def generate() -> None:
        while not done.is_set():  # keep the engine busy until the scrape has seen it
            try:
                client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": "Tell me a long story."}],
                    max_tokens=300,
                    timeout=120,
                )
            except openai.APIError:
                time.sleep(0.1)

    workers = [threading.Thread(target=generate) for _ in range(6)]
    for worker in workers:
        worker.start()

    def busy() -> bool:
        load = parse_load(httpx2.get(f"{appliance.engine_url}/metrics", timeout=10).text)
        seen.append((load.running, load.waiting, load.kv_usage))
        return bool(load.running and load.kv_usage)

    try:
        wait_for(busy, timeout=180, interval=0.05)
    finally:
        done.set()
        for worker in workers:
            worker.join(180)
    running, waiting, kv_usage = seen[-1]
    assert running is not None and 1 <= running <= 4  # max_num_seqs = 4
    assert waiting is not None and waiting >= 0
    assert kv_usage is not None and 0 < kv_usage <= 1
    # The appliance's own scraper reads the same exposition.
    scraped = appliance.get("/admin/load").json()["engine_metrics"]["tiny-llama"]
    assert scraped["error"] is None and scraped["running"] is not None
    assert scraped["kv_cache_usage"] is not None


def test_a_killed_engine_is_restarted_and_serves_again(appliance: VllmAppliance):
    before = appliance.engines()[ENGINE_ID]
    engine = psutil.Process(appliance.engine_pid())
    group = [engine, *engine.children(recursive=True)]
    assert any("EngineCore" in p.name() or "EngineCore" in " ".join(p.cmdline()) for p in group)

    engine.kill()

    def restarted() -> bool:
        status = appliance.engines()[ENGINE_ID]
        return status["restarts"] > before["restarts"] and status["state"] == "RUNNING"

    wait_for(restarted, timeout=START_TIMEOUT_S, interval=0.5)
    assert not any(pid_alive(p.pid) for p in group)  # the old EngineCore and workers too
    client = openai.OpenAI(base_url=f"{appliance.base_url}/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hello again"}], max_tokens=8
    )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
