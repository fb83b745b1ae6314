"""The ASGI app driven in-process: answers, streams, schema answers, errors, faults, queueing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jsonschema
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.simulator.options import SimOptions
from appliance.simulator.protocol import FaultPatch
from appliance.simulator.server import Simulator

MODEL = "llama-3.1-8b-instruct"
AUTH = {"authorization": "Bearer k"}
SCHEMA = {
    "type": "object",
    "properties": {
        "safe": {"type": "boolean"},
        "category": {"type": "string", "enum": ["none", "self_harm"]},
    },
    "required": ["safe", "category"],
    "additionalProperties": False,
}


class Response(NamedTuple):
    status: int | None
    headers: dict[bytes, bytes]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def events(self) -> list[str]:
        text = self.body.decode()
        assert text.endswith("\n\n")
        return [block.removeprefix("data: ") for block in text.split("\n\n")[:-1]]


class Exits:
    def __init__(self) -> None:
        self.codes: list[int] = []

    def __call__(self, code: int) -> None:
        self.codes.append(code)


def make(**overrides: Any) -> Simulator:
    settings: dict[str, Any] = {
        "model": MODEL, "served_model_names": (MODEL, "alias"), "api_key": "k", "time_scale": 0.0,
    }  # fmt: skip
    settings.update(overrides)
    return Simulator(SimOptions(**settings), exit_process=Exits())


async def call(
    app: Simulator,
    method: str,
    path: str,
    payload: object = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
    gone: asyncio.Event | None = None,
) -> Response:
    """One request through the app, as uvicorn would pass it; `gone` simulates a disconnect."""
    body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
    scope = {
        "type": "http", "method": method, "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }  # fmt: skip
    sent_body = False
    gone = gone or asyncio.Event()
    status: int | None = None
    out_headers: dict[bytes, bytes] = {}
    parts: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update(dict(message["headers"]))
        else:
            parts.append(message.get("body", b""))

    await app(scope, receive, send)
    return Response(status, out_headers, b"".join(parts))


def chat(content: str = "How do I sleep better?", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


# Plain answers ------------------------------------------------------------------------------


async def test_an_answer_is_marked_synthetic_and_its_usage_counts_its_words():
    app = make()
    response = await call(app, "POST", "/v1/chat/completions", chat(max_tokens=50), headers=AUTH)
    assert response.status == 200
    assert response.headers[b"x-appliance-synthetic"] == b"true"
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == MODEL
    assert answer["system_fingerprint"] == "appliance-sim"
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith("[simulated] ")
    usage = answer["usage"]
    assert usage["completion_tokens"] == 1 + len(content.removeprefix("[simulated] ").split())
    assert 30 <= usage["completion_tokens"] <= 50
    assert usage["prompt_tokens"] == 6 + 4  # ceil(22 / 4) + the message overhead
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_answers_are_deterministic_per_seed_and_never_echo_the_user():
    secret = "zebracorn quixotic marmalade"
    first = await call(make(), "POST", "/v1/chat/completions", chat(secret), headers=AUTH)
    again = await call(make(), "POST", "/v1/chat/completions", chat(secret), headers=AUTH)
    other = await call(make(seed=9), "POST", "/v1/chat/completions", chat(secret), headers=AUTH)
    text = first.json()["choices"][0]["message"]["content"]
    assert text == again.json()["choices"][0]["message"]["content"]
    assert text != other.json()["choices"][0]["message"]["content"]
    assert not any(word in text for word in secret.split())


async def test_ignore_eos_gives_exactly_max_tokens_and_finishes_with_length():
    app = make()
    for extra in ({"ignore_eos": True}, {"min_tokens": 40}):
        body = chat(max_tokens=40, **extra)
        answer = (await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)).json()
        assert answer["usage"]["completion_tokens"] == 40
        assert answer["choices"][0]["finish_reason"] == "length"


async def test_the_answer_is_capped_by_the_context_left_and_a_too_long_prompt_is_refused():
    app = make(max_model_len=300)
    # 1000 characters = 250 tokens + 4: 46 tokens of context left.
    body = chat("x" * 1000, max_tokens=200, ignore_eos=True)
    answer = (await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)).json()
    assert answer["usage"]["completion_tokens"] == 46
    refused = await call(app, "POST", "/v1/chat/completions", chat("x" * 1200), headers=AUTH)
    assert refused.status == 400
    error = refused.json()["error"]
    assert "maximum context length is 300" in error["message"]
    assert "input tokens" in error["message"] and error["param"] == "input_tokens"


async def test_models_lists_every_served_name_in_vllms_shape():
    response = await call(make(max_model_len=4096), "GET", "/v1/models", headers=AUTH)
    data = response.json()["data"]
    assert [card["id"] for card in data] == [MODEL, "alias"]
    assert data[0]["object"] == "model" and data[0]["owned_by"] == "vllm"
    assert data[0]["root"] == MODEL and data[0]["max_model_len"] == 4096


async def test_health_is_an_empty_200_without_a_key():
    response = await call(make(), "GET", "/health")
    assert (response.status, response.body) == (200, b"")


# Streaming ----------------------------------------------------------------------------------


async def test_a_stream_matches_the_plain_answer_and_ends_with_usage_then_done():
    app = make()
    plain = (await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)).json()
    body = chat(stream=True, stream_options={"include_usage": True})
    response = await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)
    assert response.status == 200
    assert response.headers[b"content-type"].startswith(b"text/event-stream")
    events = response.events()
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    # vLLM's first chunk: the role with empty content; no usage or fingerprint until the end.
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
    content = [c for c in chunks if c["choices"]]
    finishes = [c["choices"][0]["finish_reason"] for c in content]
    assert finishes[-1] == plain["choices"][0]["finish_reason"] and not any(finishes[:-1])
    text = "".join(c["choices"][0]["delta"]["content"] for c in content)
    assert text == plain["choices"][0]["message"]["content"]
    final = chunks[-1]
    assert final["choices"] == [] and final["usage"] == plain["usage"]
    assert all("usage" not in c for c in chunks[:-1])
    assert "system_fingerprint" in final
    assert all("system_fingerprint" not in c for c in chunks[:-1])


async def test_a_stream_without_include_usage_has_no_usage_field():
    body = chat(stream=True, max_tokens=5, ignore_eos=True)
    response = await call(make(), "POST", "/v1/chat/completions", body, headers=AUTH)
    chunks = [json.loads(e) for e in response.events()[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


async def test_decoding_takes_the_modelled_time_in_grouped_chunks():
    # 8B: 50 more tokens at 1/50 s each, time scale 0.1: at least 0.1 s.
    app = make(time_scale=0.1)
    body = chat(stream=True, max_tokens=51, ignore_eos=True)
    started = time.monotonic()
    response = await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)
    assert time.monotonic() - started >= 0.1
    chunks = response.events()[:-1]
    assert 2 < len(chunks) < 51  # 2 ms steps are grouped into 10 ms chunks


# Structured answers -------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_a_json_schema_answer_validates(stream):
    fmt = {"type": "json_schema", "json_schema": {"name": "g", "schema": SCHEMA, "strict": True}}
    body = chat(response_format=fmt, stream=stream, stream_options={"include_usage": True})
    response = await call(make(), "POST", "/v1/chat/completions", body, headers=AUTH)
    if stream:
        chunks = [json.loads(e) for e in response.events()[:-1]]
        text = "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"])
        usage = chunks[-1]["usage"]
    else:
        text = response.json()["choices"][0]["message"]["content"]
        usage = response.json()["usage"]
    answer = json.loads(text)
    jsonschema.validate(answer, SCHEMA)
    assert answer == {"safe": False, "category": "none"}
    assert usage["completion_tokens"] == -(-len(text) // 4)


async def test_structured_outputs_and_json_object_are_answered_with_json():
    app = make()
    for extra in (
        {"structured_outputs": {"json": SCHEMA}},
        {"structured_outputs": {"json": json.dumps(SCHEMA)}},
    ):
        answer = await call(app, "POST", "/v1/chat/completions", chat(**extra), headers=AUTH)
        jsonschema.validate(json.loads(answer.json()["choices"][0]["message"]["content"]), SCHEMA)
    body = chat(response_format={"type": "json_object"})
    answer = (await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)).json()
    assert isinstance(json.loads(answer["choices"][0]["message"]["content"]), dict)


# Errors -------------------------------------------------------------------------------------


async def test_guided_json_is_ignored_as_vllm_ignores_it():
    answer = await call(
        make(), "POST", "/v1/chat/completions", chat(guided_json=SCHEMA), headers=AUTH
    )
    assert answer.status == 200
    content = answer.json()["choices"][0]["message"]["content"]
    assert not content.lstrip().startswith("{")


@pytest.mark.parametrize(
    ("path", "method", "payload", "headers"),
    [
        ("/v1/chat/completions", "POST", chat(), None),
        ("/v1/chat/completions", "POST", chat(), {"authorization": "Bearer no"}),
        ("/v1/models", "GET", None, None),
        ("/sim/faults", "GET", None, None),
    ],
)
async def test_a_missing_or_wrong_key_gets_vllms_own_401_body(path, method, payload, headers):
    response = await call(make(), method, path, payload, headers=headers)
    assert response.status == 401
    assert response.json() == {"error": "Unauthorized"}


@pytest.mark.parametrize(
    ("path", "method", "payload", "headers", "status", "kind"),
    [
        ("/v1/chat/completions", "POST", {**chat(), "model": "gpt-9"}, AUTH, 404, "NotFoundError"),
        ("/v1/chat/completions", "POST", {"model": MODEL}, AUTH, 400, "BadRequestError"),
        ("/v1/chat/completions", "POST", {"model": MODEL, "messages": []}, AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(temperature=3), AUTH, 400, "BadRequestError"),
        ("/v1/chat/completions", "POST", chat(top_p=0), AUTH, 400, "BadRequestError"),
        ("/v1/chat/completions", "POST", chat(temperature=-1), AUTH, 400, "BadRequestError"),
        ("/v1/chat/completions", "POST", chat(presence_penalty=3), AUTH, 400, "BadRequestError"),
        ("/v1/chat/completions", "POST", chat(frequency_penalty=-3), AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(repetition_penalty=0), AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(top_k=-2), AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(min_p=1.5), AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(min_tokens=9, max_tokens=3), AUTH, 400, None),
        ("/v1/chat/completions", "POST", chat(max_tokens=10**6), AUTH, 400, "BadRequestError"),
        (
            "/v1/chat/completions", "POST",
            chat(response_format={"type": "json_schema", "json_schema": {"name": "x"}}),
            AUTH, 400, "BadRequestError",
        ),
        (
            "/v1/chat/completions", "POST",
            chat(response_format={"type": "json_schema",
                                  "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}),
            AUTH, 400, "BadRequestError",
        ),
        ("/v1/chat/completions", "POST", chat(max_tokens=0), AUTH, 400, None),
        (
            "/v1/chat/completions", "POST",
            chat(response_format={"type": "json_schema",
                                  "json_schema": {"name": "x", "schema": {"$ref": "http://x"}}}),
            AUTH, 400, None,
        ),
    ],
)  # fmt: skip
async def test_errors_have_the_openai_shape(path, method, payload, headers, status, kind):
    response = await call(make(), method, path, payload, headers=headers)
    assert response.status == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == status
    if kind:
        assert error["type"] == kind


async def test_malformed_json_is_a_400_and_unknown_fields_are_ignored():
    app = make()
    bad = await call(app, "POST", "/v1/chat/completions", raw=b"{not json", headers=AUTH)
    assert bad.status == 400 and "Invalid JSON" in bad.json()["error"]["message"]
    extra = chat(temperature=0.2, top_p=0.9, user="u", tools=[], frequency_penalty=0)
    assert (await call(app, "POST", "/v1/chat/completions", extra, headers=AUTH)).status == 200


async def test_unknown_paths_and_methods():
    app = make()
    assert (await call(app, "GET", "/nope")).status == 404
    assert (await call(app, "GET", "/v1/chat/completions", headers=AUTH)).status == 405


async def test_without_an_api_key_everything_is_open():
    response = await call(make(api_key=None), "POST", "/v1/chat/completions", chat())
    assert response.status == 200


# Faults -------------------------------------------------------------------------------------


async def test_error_next_fails_exactly_that_many_requests_with_a_500():
    app = make()
    changed = await call(app, "POST", "/sim/faults", {"error_next": 1}, headers=AUTH)
    assert changed.json()["error_next"] == 1
    first = await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)
    second = await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)
    assert first.status == 500 and first.json()["error"]["type"] == "InternalServerError"
    assert second.status == 200
    assert (await call(app, "GET", "/sim/faults", headers=AUTH)).json()["error_next"] == 0


async def test_a_bad_fault_patch_is_refused():
    response = await call(make(), "POST", "/sim/faults", {"error_rate": 3}, headers=AUTH)
    assert response.status == 400


async def test_malformed_answers_break_the_body_the_json_content_or_one_sse_line():
    app = make()
    app.faults.update(FaultPatch(malformed_next=3))
    text = await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)
    assert text.status == 200
    with pytest.raises(json.JSONDecodeError):
        text.json()
    fmt = {"type": "json_schema", "json_schema": {"name": "g", "schema": SCHEMA}}
    structured = await call(
        app, "POST", "/v1/chat/completions", chat(response_format=fmt), headers=AUTH
    )
    with pytest.raises(json.JSONDecodeError):
        json.loads(structured.json()["choices"][0]["message"]["content"])
    stream = await call(
        app, "POST", "/v1/chat/completions", chat(stream=True, max_tokens=40), headers=AUTH
    )
    broken = 0
    for event in stream.events():
        try:
            json.loads(event) if event != "[DONE]" else None
        except json.JSONDecodeError:
            broken += 1
    assert broken == 1


async def test_crash_after_ends_the_process_when_that_request_arrives():
    app = make(crash_after=2)
    assert (await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)).status == 200
    assert app._exit.codes == []  # type: ignore[attr-defined]
    await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)
    assert app._exit.codes == [1]  # type: ignore[attr-defined]


async def test_a_stalled_request_holds_its_slot_others_queue_and_a_disconnect_frees_it():
    app = make(max_num_seqs=1, stall_s=60.0)
    app.faults.update(FaultPatch(stall_next=1))
    gone = asyncio.Event()
    stalled = asyncio.create_task(
        call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH, gone=gone)
    )
    await until(lambda: app.scheduler.running == 1)
    queued = asyncio.create_task(call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH))
    await until(lambda: app.scheduler.waiting == 1)
    page = (await call(app, "GET", "/metrics")).body.decode()
    assert 'vllm:num_requests_waiting{engine="0",model_name="llama-3.1-8b-instruct"} 1.0' in page
    gone.set()
    assert (await asyncio.wait_for(queued, 10)).status == 200
    assert (await asyncio.wait_for(stalled, 10)).status is None  # never answered
    assert (app.scheduler.running, app.scheduler.waiting, app.scheduler.reserved) == (0, 0, 0)
    assert app.metrics.finished_count("abort") == 1


async def test_a_stalled_stream_stalls_mid_stream():
    app = make(stall_s=60.0)
    app.faults.update(FaultPatch(stall_next=1))
    gone = asyncio.Event()
    sent: list[bytes] = []
    body = json.dumps(chat(stream=True, max_tokens=64, ignore_eos=True)).encode()
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message.get("body", b""))

    scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions",
             "headers": [(b"authorization", b"Bearer k")]}  # fmt: skip
    task = asyncio.create_task(app(scope, receive, send))
    await until(lambda: app.scheduler.running == 1 and len(sent) > 2)
    await asyncio.sleep(0.05)
    text = b"".join(sent).decode()
    assert "[DONE]" not in text and 'finish_reason":"length' not in text
    gone.set()
    await asyncio.wait_for(task, 10)
    assert app.scheduler.running == 0 and app.metrics.finished_count("abort") == 1


# Metrics ------------------------------------------------------------------------------------


async def test_metrics_count_tokens_and_finished_requests():
    app = make()
    usages = []
    for _ in range(3):
        response = await call(app, "POST", "/v1/chat/completions", chat(), headers=AUTH)
        usages.append(response.json()["usage"])
    page = await call(app, "GET", "/metrics")
    assert page.headers[b"content-type"].startswith(b"text/plain")
    values = {
        (s.name, s.labels.get("finished_reason")): s.value
        for family in text_string_to_metric_families(page.body.decode())
        for s in family.samples
    }
    assert values[("vllm:prompt_tokens_total", None)] == sum(u["prompt_tokens"] for u in usages)
    assert values[("vllm:generation_tokens_total", None)] == sum(
        u["completion_tokens"] for u in usages
    )
    finished = values[("vllm:request_success_total", "stop")]
    finished += values[("vllm:request_success_total", "length")]
    assert finished == 3
    assert values[("vllm:e2e_request_latency_seconds_count", None)] == 3
    assert values[("vllm:num_requests_running", None)] == 0


async def test_the_request_struct_ignores_unknown_fields():
    from appliance.simulator.protocol import ChatRequest

    request = msgspec.json.decode(
        b'{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},'
        b'{"type":"image_url","image_url":{"url":"x"}}],"x":1}],"logit_bias":{}}',
        type=ChatRequest,
    )
    assert request.messages[0].text_parts() == ["hi"]


@pytest.mark.parametrize("stream", [False, True])
async def test_n_choices_are_answered_as_vllm_does(stream):
    body = chat(n=2, max_tokens=4, ignore_eos=True, stream=stream)
    response = await call(make(), "POST", "/v1/chat/completions", body, headers=AUTH)
    assert response.status == 200
    if stream:
        chunks = [json.loads(e) for e in response.events()[:-1]]
        indexes = [c["choices"][0]["index"] for c in chunks]
        assert set(indexes) == {0, 1}
        texts = {
            i: "".join(
                c["choices"][0]["delta"]["content"] for c in chunks if c["choices"][0]["index"] == i
            )
            for i in (0, 1)
        }
        assert texts[0] and texts[0] == texts[1]
    else:
        answer = response.json()
        assert [c["index"] for c in answer["choices"]] == [0, 1]
        assert answer["usage"]["completion_tokens"] == 8


async def test_the_first_served_name_is_echoed_for_an_alias():
    app = make(served_model_names=(MODEL, "alias"))
    for stream in (False, True):
        body = {**chat(stream=stream), "model": "alias"}
        response = await call(app, "POST", "/v1/chat/completions", body, headers=AUTH)
        if stream:
            assert {json.loads(e)["model"] for e in response.events()[:-1]} == {MODEL}
        else:
            assert response.json()["model"] == MODEL


async def test_vllms_messages_for_out_of_range_sampling():
    app = make()
    refused = await call(app, "POST", "/v1/chat/completions", chat(temperature=3), headers=AUTH)
    assert refused.json()["error"] == {
        "message": "temperature must be in [0, 2], got 3.0. (parameter=temperature, value=3.0)",
        "type": "BadRequestError",
        "param": "temperature",
        "code": 400,
    }
    too_many = await call(app, "POST", "/v1/chat/completions", chat(max_tokens=9000), headers=AUTH)
    assert too_many.json()["error"]["message"].startswith(
        "max_tokens=9000 cannot be greater than max_model_len=8192. Please request fewer"
    )
    accepted = chat(temperature=0, top_p=1, top_k=-1, min_p=0, presence_penalty=2, n=1)
    assert (await call(app, "POST", "/v1/chat/completions", accepted, headers=AUTH)).status == 200
