"""`appliance check`: the service guide's connection test, against the appliance or any vLLM.

Connectivity, model availability, one chat completion, several latency samples (P50/P95), error
handling (an unknown model must give an OpenAI-shaped 404), and streaming. Exit 1 if any fails.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from appliance.quantiles import percentile

PROMPT = "Reply with one short friendly sentence. This is an automated connection test."


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


def run_checks(
    base_url: str,
    api_key: str,
    *,
    model: str | None,
    samples: int,
    timeout: float,
    out: TextIO = sys.stdout,
) -> int:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key or "EMPTY", timeout=timeout, max_retries=0)
    results: list[CheckResult] = []
    state: dict[str, Any] = {"model": model}

    def step(name: str, fn: Callable[[], str]) -> bool:
        started = time.perf_counter()
        try:
            detail = fn()
            ok = True
        except Exception as exc:
            detail, ok = _explain(exc), False
        elapsed = (time.perf_counter() - started) * 1000
        results.append(CheckResult(name, ok, f"{detail} ({elapsed:.0f} ms)"))
        print(f"{'PASS' if ok else 'FAIL'}  {name:<20} {results[-1].detail}", file=out, flush=True)
        return ok

    print(f"Checking {base_url}", file=out)
    if not step("connectivity", lambda: _connectivity(client, state)):
        print("Cannot reach the service; stopping here.", file=out)
        return 1
    step("model availability", lambda: _availability(state))
    step("chat completion", lambda: _chat(client, state["model"]))
    step("latency", lambda: _latency(client, state["model"], samples))
    step("error handling", lambda: _error_handling(client))
    step("streaming", lambda: _streaming(client, state["model"]))
    failed = [r.name for r in results if not r.ok]
    print(f"{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0


def _connectivity(client: Any, state: dict[str, Any]) -> str:
    models = [m.id for m in client.models.list().data]
    state["models"] = models
    return f"{len(models)} models listed"


def _availability(state: dict[str, Any]) -> str:
    models: list[str] = state.get("models", [])
    if state["model"] is None:
        state["model"] = "kai" if "kai" in models else (models[0] if models else None)
    if state["model"] not in models:
        raise RuntimeError(f"model {state['model']!r} not in {models}")
    return f"{state['model']} is available"


def _chat(client: Any, model: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=32
    )
    text = reply.choices[0].message.content or ""
    if not text.strip():
        raise RuntimeError("empty reply")
    return f"{reply.usage.completion_tokens if reply.usage else '?'} tokens from {reply.model}"


def _latency(client: Any, model: str, samples: int) -> str:
    times = []
    for _ in range(max(samples, 1)):
        started = time.perf_counter()
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], max_tokens=16
        )
        times.append((time.perf_counter() - started) * 1000)
    p50 = statistics.median(times)
    p95 = percentile(times, 95)
    return f"{len(times)} samples, P50 {p50:.0f} ms, P95 {p95:.0f} ms"


def _error_handling(client: Any) -> str:
    import openai

    try:
        client.chat.completions.create(
            model="appliance-check-no-such-model",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=4,
        )
    except openai.NotFoundError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        if "message" not in body and "message" not in body.get("error", {}):
            raise RuntimeError("404 without an OpenAI-shaped error body") from None
        return "unknown model gives 404 with an error body"
    except openai.BadRequestError:
        return "unknown model gives 400 with an error body"
    raise RuntimeError("an unknown model was accepted")


def _streaming(client: Any, model: str) -> str:
    chunks, text, usage = 0, [], None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=32,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        if chunk.usage is not None:
            usage = chunk.usage
    if not text:
        raise RuntimeError("no content streamed")
    tokens = usage.completion_tokens if usage else "no usage"
    return f"{chunks} chunks, usage: {tokens}"


def _explain(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    message = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{name}{f' (HTTP {status})' if status else ''}: {message}"
