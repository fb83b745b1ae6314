"""Malformed requests against a real appliance on simulator engines: each gets a 4xx with an
OpenAI-shaped body that says what was wrong and, where it can, which field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.running import Appliance, sim_config

pytestmark = pytest.mark.integration

USER = [{"role": "user", "content": "hello there"}]
NESTED = b"[" * 1000 + b"]" * 1000
HUGE = 99999999999999999999


@dataclass(frozen=True)
class Bad:
    name: str
    path: str
    body: Any = None  # JSON-encodable, or raw bytes
    status: int = 400
    expect: str = ""  # in the message
    param: str | None = None
    method: str = "POST"


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "kai", "messages": USER, **fields}


CHAT = "/v1/chat/completions"
CONVERSE = "/v1/converse"
CHECK = "/v1/agents/guardrail/check"
GENETIC = "/v1/agents/genetic/analyze"

CASES = [
    # The chat passthrough.
    Bad(
        "user message without content",
        CHAT,
        chat(messages=[{"role": "user"}]),
        param="messages[0]",
        expect="needs `content`",
    ),
    Bad("temperature 50", CHAT, chat(temperature=50), param="temperature", expect="<= 2"),
    Bad("temperature negative", CHAT, chat(temperature=-1), param="temperature"),
    Bad(
        "max_tokens 1e22",
        CHAT,
        b'{"model":"kai","messages":[{"role":"user","content":"x"}],"max_tokens":1e22}',
        param="max_tokens",
    ),
    Bad("max_tokens zero", CHAT, chat(max_tokens=0), param="max_tokens"),
    Bad(
        "max_tokens beyond int64",
        CHAT,
        b'{"model":"kai","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999999999999999}',
        param="max_tokens",
    ),
    Bad(
        "max_completion_tokens string",
        CHAT,
        chat(max_completion_tokens="ten"),
        param="max_completion_tokens",
    ),
    Bad("top_p zero", CHAT, chat(top_p=0), param="top_p"),
    Bad("top_p above one", CHAT, chat(top_p=1.5), param="top_p"),
    Bad("presence penalty 3", CHAT, chat(presence_penalty=3), param="presence_penalty"),
    Bad("n zero", CHAT, chat(n=0), param="n"),
    Bad("messages empty", CHAT, chat(messages=[]), param="messages"),
    Bad("messages missing", CHAT, {"model": "kai"}, expect="messages"),
    Bad("model missing", CHAT, {"messages": USER}, expect="model"),
    Bad(
        "role unknown",
        CHAT,
        chat(messages=[{"role": "robot", "content": "x"}]),
        param="messages[0].role",
    ),
    Bad(
        "content a number",
        CHAT,
        chat(messages=[{"role": "user", "content": 5}]),
        param="messages[0].content",
    ),
    Bad(
        "text part without text",
        CHAT,
        chat(messages=[{"role": "user", "content": [{"type": "text"}]}]),
        expect="needs `text`",
    ),
    Bad("stream not a bool", CHAT, chat(stream="yes"), param="stream"),
    Bad(
        "deep nesting in chat",
        CHAT,
        b'{"model":"kai","messages":[{"role":"user","content":' + NESTED + b"}]}",
        expect="levels deep",
    ),
    Bad("invalid JSON in chat", CHAT, b'{"model": "kai", "messages": [', expect="line 1, column"),
    Bad("empty chat body", CHAT, b"", expect="empty"),
    Bad("body not an object", CHAT, [1, 2, 3], expect="expected `object`"),
    Bad("unknown model", CHAT, chat(model="no-such-model"), status=404, expect="does not exist"),
    Bad(
        "engine refuses top_k=-5 (passed through)",
        CHAT,
        chat(model="llama-3.1-8b-instruct", top_k=-5),
        expect="engine refused",
    ),
    Bad("GET on chat completions", CHAT, None, status=405, method="GET"),
    # Converse and the other agent routes.
    Bad("empty converse body", CONVERSE, b"", expect="empty: expected a JSON object"),
    Bad("invalid JSON in converse", CONVERSE, b'{"message": "hi"', expect="line 1, column 17"),
    Bad(
        "truncated converse body",
        CONVERSE,
        b'{"message": "hi", "history": [',
        expect="line 1, column",
    ),
    Bad(
        "deep nesting in converse", CONVERSE, b'{"message": ' + NESTED + b"}", expect="levels deep"
    ),
    Bad("converse message missing", CONVERSE, {"history": []}, expect="`message`"),
    Bad("converse message a number", CONVERSE, {"message": 5}, param="message"),
    Bad(
        "converse unknown field",
        CONVERSE,
        {"message": "hi", "colour": "red"},
        expect="unknown field `colour`",
    ),
    Bad(
        "converse unknown locale",
        CONVERSE,
        {"message": "hi", "locale": "xx-YY"},
        param="locale",
        expect="known: ",
    ),
    Bad(
        "converse history role wrong",
        CONVERSE,
        {"message": "hi", "history": [{"role": "system", "content": "x"}]},
    ),
    Bad("guardrail unknown locale", CHECK, {"text": "hi", "locale": "zz"}, param="locale"),
    Bad("guardrail role wrong", CHECK, {"text": "hi", "role": "system"}),
    Bad("genetic check-in mood 11", GENETIC, {"check_ins": [{"at": "2024-01-01", "mood": 11}]}),
    Bad("genetic not an object", GENETIC, "just a string"),
    # Benchmarks.
    Bad("run id beyond SQLite", f"/benchmarks/{HUGE}", method="GET", param="run_id"),
    Bad("report id beyond SQLite", f"/benchmarks/{HUGE}/report", method="GET", param="run_id"),
    Bad("run id not found", "/benchmarks/123456", method="GET", status=404),
    Bad("report format unknown", "/benchmarks/1/report?format=pdf", method="GET", status=400),
    Bad("benchmark limit zero", "/benchmarks?limit=0", method="GET", param="limit"),
    Bad("benchmark params unknown agent", "/benchmarks", {"agents": ["nobody"]}),
    Bad("benchmark params unknown field", "/benchmarks", {"colour": 1}),
    Bad("benchmark concurrency zero", "/benchmarks", {"concurrency": 0}),
    # Elsewhere.
    Bad("breaker of an unknown engine", "/admin/breakers/nope/reset", status=404),
    Bad("no such route", "/v1/nothing-here", status=404, method="GET"),
]


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    directory: Path = tmp_path_factory.mktemp("bad-requests")
    config, port = sim_config(
        directory,
        benchmarks=True,
        replace={
            'nightly_cron = "0 3 * * *"': 'nightly_cron = "0 3 29 2 *"',
            'probe_cron = "*/15 * * * *"': 'probe_cron = "0 3 29 2 *"',
        },
    )
    with Appliance(config, port) as running:
        yield running


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_malformed_request_gets_an_openai_shaped_4xx(appliance: Appliance, case: Bad) -> None:
    import httpx2

    content = case.body if isinstance(case.body, bytes) else None
    if case.body is not None and content is None:
        content = json.dumps(case.body).encode()
    response = httpx2.request(
        case.method,
        appliance.base_url + case.path,
        content=content,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    assert case.expect in error["message"], error["message"]
    if case.param is not None:
        assert error["param"] == case.param, error
    assert "data: 'data'" not in error["message"]
    assert "truncated" not in error["message"].lower()
