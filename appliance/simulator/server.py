"""The simulator's HTTP surface: a raw ASGI app speaking vLLM's OpenAI-compatible API.

No framework: routing is a dict lookup and bodies are msgspec structs, so at time scale 0 the
simulator answers thousands of small requests per second and serves as the baseline of the
gateway-overhead benchmark. Every response carries `x-appliance-synthetic: true`, and every answer
`system_fingerprint: "appliance-sim"`. A request whose client goes away stops and frees its slot,
as in vLLM; that watch is only started once a request has to wait, so the fast path stays fast.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, NamedTuple

import msgspec

from appliance.simulator import latency
from appliance.simulator.faults import Draw, Faults
from appliance.simulator.filler import Filler, json_tokens
from appliance.simulator.metrics import CONTENT_TYPE as METRICS_TYPE
from appliance.simulator.metrics import Metrics
from appliance.simulator.options import SimOptions
from appliance.simulator.protocol import (
    FINGERPRINT,
    AnswerMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    ErrorBody,
    ErrorInfo,
    FaultPatch,
    ModelCard,
    ModelList,
    Usage,
)
from appliance.simulator.scheduler import Scheduler
from appliance.simulator.schema_instance import OBJECT_JSON, SchemaError, check_schema, instance

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("appliance.simulator")

MAX_BODY = 32 * 1024 * 1024
SYNTHETIC = (b"x-appliance-synthetic", b"true")
JSON_TYPE = (b"content-type", b"application/json")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    SYNTHETIC,
]
DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.Encoder().encode


class Plan(NamedTuple):
    """What one chat request will produce and hold."""

    prompt: int
    tokens: list[str]
    finish_reason: str
    reservation: int
    is_json: bool


class Aborted(Exception):
    """The client went away while its body was being read."""


class Simulator:
    """The ASGI application."""

    def __init__(
        self,
        options: SimOptions,
        *,
        exit_process: Callable[[int], object] = os._exit,
    ) -> None:
        self.options = options
        self.names = options.served_model_names
        self.profile = options.profile()
        self.scheduler = Scheduler(options.max_num_seqs, options.kv_budget)
        self.metrics = Metrics(
            self.names[0],
            max_model_len=options.max_model_len,
            legacy_names=options.legacy_metric_names,
        )
        self.faults = Faults(
            seed=options.seed,
            error_rate=options.error_rate,
            stall_rate=options.stall_rate,
            stall_s=options.stall_s,
            malformed_rate=options.malformed_rate,
            crash_after=options.crash_after,
        )
        self.filler = Filler(options.seed)
        self._exit = exit_process
        self._auth = f"Bearer {options.api_key}".encode() if options.api_key else None
        self._decode_chat = msgspec.json.Decoder(ChatRequest).decode
        self._decode_patch = msgspec.json.Decoder(FaultPatch).decode
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()
        created = int(time.time())
        self._models_body = _encode(
            ModelList(
                data=[
                    ModelCard(
                        id=name,
                        created=created,
                        root=options.model,
                        max_model_len=options.max_model_len,
                    )
                    for name in self.names
                ]
            )
        )
        self._routes: dict[tuple[str, str], Callable[[Scope, Receive, Send], Awaitable[None]]] = {
            ("POST", "/v1/chat/completions"): self.chat,
            ("GET", "/health"): self.health,
            ("GET", "/v1/models"): self.models,
            ("GET", "/metrics"): self.metrics_page,
            ("GET", "/sim/faults"): self.get_faults,
            ("POST", "/sim/faults"): self.set_faults,
        }
        self._paths = {path for _, path in self._routes}

    # ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            status = 405 if scope["path"] in self._paths else 404
            detail = "Method Not Allowed" if status == 405 else "Not Found"
            await _json(send, status, _encode({"detail": detail}))
            return
        try:
            await route(scope, receive, send)
        except Aborted:
            return

    # Plain routes -------------------------------------------------------------------------

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", b"0"), SYNTHETIC],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await _unauthorized(send)
            return
        await _json(send, 200, self._models_body)

    async def metrics_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheduler = self.scheduler
        body = self.metrics.render(scheduler.running, scheduler.waiting, scheduler.kv_usage)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", METRICS_TYPE),
                    (b"content-length", str(len(body)).encode()),
                    SYNTHETIC,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def get_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await _unauthorized(send)
            return
        await _json(send, 200, _encode(self.faults.snapshot()))

    async def set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await _unauthorized(send)
            return
        body = await _read_body(receive, send)
        if body is None:
            return
        try:
            patch = self._decode_patch(body or b"{}")
        except msgspec.DecodeError as exc:
            await _error(send, 400, _problem(exc), "BadRequestError")
            return
        self.faults.update(patch)
        log.info("faults changed: %s", _encode(self.faults.snapshot()).decode())
        await _json(send, 200, _encode(self.faults.snapshot()))

    # Chat completions ---------------------------------------------------------------------

    async def chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.faults.arrive():
            log.warning("crash-after reached at chat request %d: exiting", self.faults.arrivals)
            for handler in logging.getLogger().handlers:
                handler.flush()
            sys.stderr.flush()
            self._exit(1)
            return
        if not self._authorized(scope):
            await _unauthorized(send)
            return
        body = await _read_body(receive, send)
        if body is None:
            return
        try:
            request = self._decode_chat(body)
        except msgspec.DecodeError as exc:
            await _error(send, 400, _problem(exc), "BadRequestError")
            return
        model = request.model or self.names[0]
        if model not in self.names:
            await _error(
                send, 404, f"The model `{model}` does not exist.", "NotFoundError", param="model"
            )
            return
        problem = self._refusal(request)
        if problem is not None:
            message, param = problem
            await _error(send, 400, message, "BadRequestError", param=param)
            return
        if request.guided_json is not None:
            log.warning("guided_json is ignored, as vLLM ignores it: use structured_outputs")
        try:
            plan = self._plan(request)
        except SchemaError as exc:
            await _error(send, 400, f"Grammar error: {exc}", "BadRequestError")
            return
        except _TooLong as exc:
            await _error(send, 400, str(exc), "BadRequestError", param="input_tokens")
            return
        # vLLM answers with the engine's first served name whatever alias was asked for.
        model = self.names[0]
        fault = self.faults.draw()
        if fault.error:
            await _error(send, 500, "Simulated engine error.", "InternalServerError")
            return
        watch = _Watch(receive)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            await self._stream(send, watch, model, plan, fault, include_usage, request.n)
        else:
            await self._complete(send, watch, model, plan, fault, request.n)

    def _refusal(self, request: ChatRequest) -> tuple[str, str | None] | None:
        """What vLLM 0.32's request validation refuses with a 400: (message, param)."""
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None and not -2 <= value <= 2:
                return f"{name} must be in [-2, 2], got {float(value)}.", None
        repetition = request.repetition_penalty
        if repetition is not None and repetition <= 0:
            return f"repetition_penalty must be greater than zero, got {float(repetition)}.", None
        temperature = request.temperature
        if temperature is not None and temperature < 0:
            return (
                f"temperature must be non-negative, got {float(temperature)}. "
                f"(parameter=temperature, value={float(temperature)})",
                "temperature",
            )
        if temperature is not None and temperature > 2:
            return _out_of_range("temperature", "[0, 2]", temperature), "temperature"
        top_p = request.top_p
        if top_p is not None and not 0 < top_p <= 1:
            return _out_of_range("top_p", "(0, 1]", top_p), "top_p"
        if request.top_k is not None and request.top_k < -1:
            return f"top_k must be 0 (disable), or at least 1, got {request.top_k}.", None
        if request.min_p is not None and not 0 <= request.min_p <= 1:
            return f"min_p must be in [0, 1], got {float(request.min_p)}.", None
        limit = request.max_tokens or request.max_completion_tokens
        if limit is not None and request.min_tokens > limit:
            return (
                f"min_tokens must be less than or equal to max_tokens={limit}, got "
                f"{request.min_tokens}.",
                None,
            )
        max_len = self.options.max_model_len
        for name in ("max_tokens", "max_completion_tokens"):
            value = getattr(request, name)
            if value is not None and value > max_len:
                return (
                    f"{name}={value} cannot be greater than max_model_len={max_len}. Please "
                    f"request fewer output tokens. (parameter={name}, value={value})",
                    name,
                )
        fmt = request.response_format
        if (
            fmt is not None
            and fmt.type == "json_schema"
            and (fmt.json_schema is None or fmt.json_schema.schema is None)
        ):
            return (
                "You must use one kind of structured outputs constraint but none are specified.",
                None,
            )
        return None

    def _plan(self, request: ChatRequest) -> Plan:
        texts: list[str] = []
        chars: list[int] = []
        for message in request.messages:
            parts = message.text_parts()
            texts.extend(parts)
            chars.append(sum(len(part) for part in parts))
        prompt = latency.prompt_tokens(chars)
        max_len = self.options.max_model_len
        if prompt >= max_len:
            raise _TooLong(
                f"This model's maximum context length is {max_len} tokens. However, your "
                f"prompt contains {prompt} input tokens, which exceeds this limit even without "
                "any output tokens. Please reduce the length of the input prompt."
            )
        max_tokens = (
            request.max_tokens or request.max_completion_tokens or latency.DEFAULT_MAX_TOKENS
        )
        limit = latency.completion_limit(max_tokens, prompt, max_len)
        reservation = latency.kv_reservation(prompt, limit, self.scheduler.kv_cache_tokens)
        schema = _json_target(request)
        if schema is not None:
            check_schema(schema)
            text = _encode(OBJECT_JSON if schema is _ANY_OBJECT else instance(schema)).decode()
            pieces = json_tokens(text, latency.CHARS_PER_TOKEN)
            return Plan(prompt, pieces, "stop", reservation, True)
        draw = self.filler.draw(texts)
        count = latency.completion_tokens(
            max_tokens,
            limit,
            exact=request.ignore_eos,
            min_tokens=request.min_tokens,
            draw=draw >> 12,
        )
        tokens = self.filler.tokens(draw, count)
        return Plan(prompt, tokens, latency.finish_reason(count, limit), reservation, False)

    async def _complete(
        self, send: Send, watch: _Watch, model: str, plan: Plan, fault: Draw, n: int = 1
    ) -> None:
        """One answer; `n` choices carry the same text (the simulator decodes once)."""
        run = _Run(self, watch, plan)
        try:
            await run.start()
            left = len(plan.tokens) - 1
            while left > 0:
                left -= await run.tick(left, latency.BLOCK_TICK_S, left)
            if fault.stall:
                await run.stall(self.faults.stall_s)
            content = "".join(plan.tokens)
            if fault.malformed and plan.is_json:
                content = content[: len(content) // 2]
            body = _encode(
                ChatCompletion(
                    id=self._next_id(),
                    created=int(time.time()),
                    model=model,
                    choices=[
                        Choice(
                            index=index,
                            message=AnswerMessage(content=content),
                            finish_reason=plan.finish_reason,
                        )
                        for index in range(n)
                    ],
                    usage=_usage(plan.prompt, n * len(plan.tokens)),
                )
            )
            if fault.malformed and not plan.is_json:
                body = body[: len(body) // 2]
            watch.done = True
            await _json(send, 200, body)
        except asyncio.CancelledError:
            if not watch.aborted():
                raise
        finally:
            watch.close()
            run.finish()

    async def _stream(
        self,
        send: Send,
        watch: _Watch,
        model: str,
        plan: Plan,
        fault: Draw,
        include_usage: bool,
        n: int = 1,
    ) -> None:
        """vLLM's chunk sequence: per choice a role chunk with empty content, then content
        chunks, the last with its finish reason; then the usage chunk when asked for."""
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        chunk = _Chunker(self._next_id(), model, n, include_usage)
        tokens = plan.tokens
        total = len(tokens)
        middle = total // 2
        run = _Run(self, watch, plan)
        try:
            await run.start()
            await _more(send, chunk.roles())
            sent = 0
            while sent < total:
                group = (
                    1
                    if sent == 0
                    else await run.tick(
                        total - sent, latency.STREAM_TICK_S, latency.MAX_TOKENS_PER_CHUNK
                    )
                )
                end = sent + group
                last = end >= total
                piece = "".join(tokens[sent:end])
                if fault.malformed and sent <= middle < end:
                    await _more(send, chunk.broken(piece))
                else:
                    await _more(send, chunk(piece, finish=plan.finish_reason if last else None))
                if fault.stall and sent <= middle < end:
                    await run.stall(self.faults.stall_s)
                sent = end
            if include_usage:
                await _more(send, chunk.usage(_usage(plan.prompt, n * total)))
            watch.done = True
            await send({"type": "http.response.body", "body": DONE})
        except asyncio.CancelledError:
            if not watch.aborted():
                raise
        finally:
            watch.close()
            run.finish()

    def _next_id(self) -> str:
        return f"chatcmpl-{self._id_prefix}{next(self._ids):08x}"

    def _authorized(self, scope: Scope) -> bool:
        if self._auth is None:
            return True
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    b"Bearer " + token.strip(), self._auth
                )
        return False


class _Run:
    """One request's time on the engine: queue, prefill, decode steps, release, metrics."""

    __slots__ = ("admitted", "arrival", "due", "generated", "plan", "sim", "ttft", "watch")

    def __init__(self, sim: Simulator, watch: _Watch, plan: Plan) -> None:
        self.sim = sim
        self.watch = watch
        self.plan = plan
        self.arrival = time.monotonic()
        self.admitted: float | None = None
        self.ttft = 0.0
        self.due = 0.0
        self.generated = 0

    async def start(self) -> None:
        """Wait for a slot, then prefill; the first token is ready when this returns."""
        scheduler = self.sim.scheduler
        if not scheduler.try_admit(self.plan.reservation):
            self.watch.arm()
            await scheduler.admit(self.plan.reservation)
        self.admitted = time.monotonic()
        await self._sleep(latency.prefill_s(self.sim.profile, self.plan.prompt))
        self.due = time.monotonic()
        self.ttft = self.due - self.arrival
        self.generated = 1

    async def tick(self, remaining: int, tick_s: float, cap: int) -> int:
        """Decode the next group of tokens (at most `remaining`); returns how many.

        Sleeps run to a schedule rather than back to back, so timer overshoot does not pile up.
        """
        step = latency.decode_step_s(self.sim.profile, self.sim.scheduler.running)
        group = min(remaining, latency.tokens_per_tick(step, tick_s, cap))
        if step > 0:
            self.due += group * step
            await self._sleep(self.due - time.monotonic())
        self.generated += group
        return group

    async def stall(self, seconds: float) -> None:
        """A hang: not time-scaled, ended early only by the client going away."""
        await self._sleep(seconds)
        self.due = time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.watch.arm()
            await asyncio.sleep(seconds)

    def finish(self) -> None:
        if self.admitted is None:
            return
        sim = self.sim
        sim.scheduler.release(self.plan.reservation)
        complete = self.generated >= len(self.plan.tokens) and not self.watch.fired
        sim.metrics.finished(
            reason=self.plan.finish_reason if complete else "abort",
            prompt=self.plan.prompt,
            generated=self.generated,
            queue_s=self.admitted - self.arrival,
            ttft_s=self.ttft,
            e2e_s=time.monotonic() - self.arrival,
        )


class _Watch:
    """Notices a client that goes away while its request waits, and cancels that request.

    Started by the first wait, so requests that never wait (time scale 0) pay nothing for it.
    """

    __slots__ = ("done", "fired", "owner", "receive", "task")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.owner: asyncio.Task[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.fired = False
        self.done = False

    def arm(self) -> None:
        if self.task is None:
            self.owner = asyncio.current_task()
            self.task = asyncio.get_running_loop().create_task(self._listen())

    async def _listen(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                break
        if not self.done and self.owner is not None:
            self.fired = True
            self.owner.cancel()

    def aborted(self) -> bool:
        """In an `except CancelledError`: True (and the cancel undone) when it was ours."""
        if not self.fired:
            return False
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return True

    def close(self) -> None:
        self.done = True
        if self.task is not None and not self.task.done():
            self.task.cancel()


class _Chunker:
    """Server-sent events for one stream, sharing its id, timestamp and model."""

    __slots__ = ("created", "id", "include_usage", "model", "n")

    def __init__(self, id: str, model: str, n: int, include_usage: bool) -> None:
        self.id = id
        self.model = model
        self.n = n
        self.created = int(time.time())
        self.include_usage = include_usage

    def roles(self) -> bytes:
        return b"".join(
            self._event([ChunkChoice(index=i, delta=Delta(role="assistant", content=""))])
            for i in range(self.n)
        )

    def __call__(self, content: str, *, finish: str | None = None) -> bytes:
        last = finish is not None and not self.include_usage
        return b"".join(
            self._event(
                [ChunkChoice(index=i, delta=Delta(content=content), finish_reason=finish)],
                fingerprint=last,
            )
            for i in range(self.n)
        )

    def usage(self, usage: Usage) -> bytes:
        return self._event([], usage, fingerprint=True)

    def broken(self, content: str) -> bytes:
        event = self._event([ChunkChoice(delta=Delta(content=content))])
        return event[: len(event) // 2] + b"\n\n"

    def _event(
        self, choices: list[ChunkChoice], usage: Usage | None = None, *, fingerprint: bool = False
    ) -> bytes:
        chunk = ChatCompletionChunk(
            id=self.id, created=self.created, model=self.model, choices=choices
        )
        if usage is not None:
            chunk.usage = usage
        if fingerprint:
            chunk.system_fingerprint = FINGERPRINT
        return b"data: " + _encode(chunk) + b"\n\n"


class _TooLong(ValueError):
    pass


_ANY_OBJECT: dict[str, Any] = {}


def _json_target(request: ChatRequest) -> object | None:
    """The schema an answer must follow (`_ANY_OBJECT` for json_object), or None for text."""
    fmt = request.response_format
    if fmt is not None and fmt.type == "json_schema":
        spec = fmt.json_schema
        return spec.schema if spec is not None and spec.schema is not None else _ANY_OBJECT
    if fmt is not None and fmt.type == "json_object":
        return _ANY_OBJECT
    guided = request.structured_outputs.json if request.structured_outputs is not None else None
    if isinstance(guided, str):
        try:
            guided = msgspec.json.decode(guided)
        except msgspec.DecodeError:
            raise SchemaError("structured_outputs.json is not valid JSON") from None
    return guided


def _usage(prompt: int, completion: int) -> Usage:
    return Usage(
        prompt_tokens=prompt, total_tokens=prompt + completion, completion_tokens=completion
    )


def _problem(exc: msgspec.DecodeError) -> str:
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        return text.replace("`", "")
    return f"Invalid JSON body: {text}"


async def _read_body(receive: Receive, send: Send) -> bytes | None:
    """The whole request body; None (after answering 413) when it is too large."""
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    parts = [body]
    size = len(body)
    while message.get("more_body"):
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Aborted
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            await _error(send, 413, "Request body too large.", "BadRequestError")
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _json(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                JSON_TYPE,
                (b"content-length", str(len(body)).encode()),
                SYNTHETIC,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _more(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _unauthorized(send: Send) -> None:
    """vLLM's own 401 body, which is not OpenAI-shaped."""
    await _json(send, 401, b'{"error":"Unauthorized"}')


def _out_of_range(name: str, bounds: str, value: float) -> str:
    value = float(value)
    return f"{name} must be in {bounds}, got {value}. (parameter={name}, value={value})"


async def _error(
    send: Send, status: int, message: str, kind: str, *, param: str | None = None
) -> None:
    body = ErrorBody(error=ErrorInfo(message=message, type=kind, param=param, code=status))
    await _json(send, status, _encode(body))


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
