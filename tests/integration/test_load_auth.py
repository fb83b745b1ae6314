"""API keys, per-key rate limits, /metrics, and the refusal to listen beyond loopback without a key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.support.load_stand import stand_config
from tests.support.running import Appliance

pytestmark = pytest.mark.integration

MODEL = "llama-3.1-8b-instruct"
KEY_A, KEY_B = "key-a-3f9c1e7d", "key-b-81d0c2aa"
# The harness's own key (readiness polls of /health/detailed), so A's and B's buckets stay whole.
KEY_HARNESS = "key-harness-5e21b7c0"
MARKER = "zebra-quartz-lantern"  # a message text that must never show up in metrics


def one_engine(directory: Path, **security: object) -> tuple[Path, int]:
    return stand_config(
        directory,
        engines=[{"id": "small", "model": MODEL, "max_num_seqs": 8}],
        agents={agent: (MODEL, ()) for agent in ("kai", "guardrail", "genetic", "wellness")},
        security=security,
        time_scale=0.01,
    )


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    config, port = one_engine(
        tmp_path_factory.mktemp("keys"), rate_limit_rps=0.5, rate_limit_burst=40
    )
    env = {"APPLIANCE_API_KEYS": f"{KEY_A},{KEY_B},{KEY_HARNESS}"}
    with Appliance(config, port, env=env, api_key=KEY_HARNESS) as running:
        yield running


def get(appliance: Appliance, path: str, key: str | None = None) -> httpx2.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return appliance.get(path, headers=headers)


def test_only_the_probe_stays_open(appliance: Appliance) -> None:
    assert get(appliance, "/health").status_code == 200
    assert get(appliance, "/health/detailed").status_code == 401
    assert get(appliance, "/health/detailed", KEY_A).status_code == 200


def test_everything_else_needs_a_valid_key(appliance: Appliance) -> None:
    for path in ("/v1/models", "/metrics", "/admin/breakers", "/admin/load"):
        missing = get(appliance, path)
        assert missing.status_code == 401, path
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "invalid_api_key"
        assert get(appliance, path, "not-a-key").status_code == 401
        assert get(appliance, path, KEY_B).status_code == 200
    assert appliance.get("/v1/models", headers={"x-api-key": KEY_B}).status_code == 200


def test_the_chat_passthrough_is_covered_too(appliance: Appliance) -> None:
    messages = [{"role": "user", "content": f"{MARKER} how are you"}]
    with pytest.raises(openai.AuthenticationError):
        anonymous = openai.OpenAI(
            base_url=appliance.base_url + "/v1", api_key="wrong", max_retries=0
        )
        anonymous.chat.completions.create(model="kai", messages=messages, max_tokens=4)  # type: ignore[arg-type]
    client = openai.OpenAI(base_url=appliance.base_url + "/v1", api_key=KEY_B, max_retries=0)
    reply = client.chat.completions.create(model="kai", messages=messages, max_tokens=4)  # type: ignore[arg-type]
    assert reply.choices[0].message.content


def test_each_key_has_its_own_rate_limit(appliance: Appliance) -> None:
    # Spend A's bucket until the first refusal. Asking for one particular request to be refused
    # would race the refill: at 0.5 per second a token can come back between any two requests.
    admitted = 0
    limited = None
    started = time.monotonic()
    for _ in range(80):
        response = get(appliance, "/v1/models", KEY_A)
        if response.status_code != 200:
            limited = response
            break
        admitted += 1
    elapsed = time.monotonic() - started
    assert limited is not None, "80 requests in a row were admitted"
    assert limited.status_code == 429
    # The burst is 40, less what earlier tests spent, plus what refilled while this one ran.
    assert 30 <= admitted <= 40 + 0.5 * elapsed + 1
    # 0.5 requests per second: the next token is at most 2 s away (less once part of it refilled).
    assert limited.headers["retry-after"] in {"1", "2"}
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert get(appliance, "/v1/models", KEY_B).status_code == 200  # another key, another bucket


def test_metrics_in_prometheus_format_with_no_user_text(appliance: Appliance) -> None:
    client = openai.OpenAI(base_url=appliance.base_url + "/v1", api_key=KEY_B, max_retries=0)
    for agent in ("kai", "guardrail"):
        client.chat.completions.create(
            model=agent, messages=[{"role": "user", "content": MARKER}], max_tokens=4
        )
    response = get(appliance, "/metrics", KEY_B)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert MARKER not in text
    ok = re.search(
        r'^appliance_requests_total\{agent="guardrail",model="llama-3.1-8b-instruct",'
        r'outcome="ok"\} (\d+)\.0$',
        text,
        re.M,
    )
    assert ok and int(ok[1]) >= 1
    for family in (
        'appliance_request_duration_seconds_bucket{agent="kai",le="+Inf"',
        'appliance_admitted_total{class="guardrail",engine="small"}',
        'appliance_admission_queue_depth{class="interactive",engine="small"} 0.0',
        'appliance_circuit_breaker_state{engine="small",state="closed"} 1.0',
        'appliance_engine_restarts_total{engine="small"} 0.0',
        'appliance_engine_up{engine="small"} 1.0',
        "appliance_gpu_monitor_up 0.0",  # no driver on this machine
        'appliance_engine_requests_running{engine="small"}',
    ):
        assert family in text, family


def test_admin_cli_sends_the_key(appliance: Appliance) -> None:
    base = ["--base-url", appliance.base_url]
    without = cli("breaker", "status", *base)
    assert without.returncode == 1 and "HTTP 401" in without.stderr
    with_key = cli("breaker", "status", *base, "--api-key", KEY_B)
    assert with_key.returncode == 0 and "small" in with_key.stdout


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appliance.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_no_key_means_no_listening_beyond_loopback(tmp_path: Path) -> None:
    config, _ = one_engine(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_API_KEYS"}
    refused = cli("serve", "--config", str(config), "--host", "0.0.0.0", env=env)
    assert refused.returncode == 2
    assert "loopback" in refused.stderr and "APPLIANCE_API_KEYS" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_no_key_on_loopback_serves_and_says_so(tmp_path: Path) -> None:
    config, port = one_engine(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_API_KEYS"}
    with Appliance(config, port, env=env) as running:
        assert running.get("/v1/models").status_code == 200
        assert "no API key configured: serving on loopback only" in running.log()
