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
from collections.abc import Awaitable, Callable

import msgspec

from appliance.asgi import JSON, response_body, response_start, send_bytes
from appliance.simulator import latency
from appliance.simulator.chunks import Chunker, token_usage
from appliance.simulator.faults import Draw, Faults
from appliance.simulator.filler import Filler
from appliance.simulator.http_io import (
    DONE,
    MARK,
    SSE_HEADERS,
    Aborted,
    Receive,
    Scope,
    Send,
    decode_problem,
    encode,
    lifespan,
    more,
    read_body,
    send_error,
    send_json,
    unauthorized,
)
from appliance.simulator.metrics import CONTENT_TYPE as METRICS_TYPE
from appliance.simulator.metrics import Metrics
from appliance.simulator.options import SimOptions
from appliance.simulator.plan import Plan, TooLong, make_plan
from appliance.simulator.protocol import (
    AnswerMessage,
    ChatCompletion,
    ChatRequest,
    Choice,
    FaultPatch,
    ModelCard,
    ModelList,
)
from appliance.simulator.run import Run
from appliance.simulator.scheduler import Scheduler
from appliance.simulator.schema_instance import SchemaError
from appliance.simulator.validation import refusal
from appliance.simulator.watch import Watch

log = logging.getLogger("appliance.simulator")


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
        self._models_body = encode(
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
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        route = self._routes.get((scope["method"], scope["path"]))
        if route is None:
            status = 405 if scope["path"] in self._paths else 404
            detail = "Method Not Allowed" if status == 405 else "Not Found"
            await send_json(send, status, encode({"detail": detail}))
            return
        try:
            await route(scope, receive, send)
        except Aborted:
            return

    # Plain routes -------------------------------------------------------------------------

    async def health(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send_bytes(send, 200, b"", None, MARK)

    async def models(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await unauthorized(send)
            return
        await send_json(send, 200, self._models_body)

    async def metrics_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        scheduler = self.scheduler
        body = self.metrics.render(scheduler.running, scheduler.waiting, scheduler.kv_usage)
        await send_bytes(send, 200, body, METRICS_TYPE, MARK)

    async def get_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await unauthorized(send)
            return
        await send_json(send, 200, encode(self.faults.snapshot()))

    async def set_faults(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._authorized(scope):
            await unauthorized(send)
            return
        body = await read_body(receive, send)
        if body is None:
            return
        try:
            patch = self._decode_patch(body or b"{}")
        except msgspec.DecodeError as exc:
            await send_error(send, 400, decode_problem(exc), "BadRequestError")
            return
        self.faults.update(patch)
        log.info("faults changed: %s", encode(self.faults.snapshot()).decode())
        await send_json(send, 200, encode(self.faults.snapshot()))

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
            await unauthorized(send)
            return
        body = await read_body(receive, send)
        if body is None:
            return
        try:
            request = self._decode_chat(body)
        except msgspec.DecodeError as exc:
            await send_error(send, 400, decode_problem(exc), "BadRequestError")
            return
        model = request.model or self.names[0]
        if model not in self.names:
            await send_error(
                send, 404, f"The model `{model}` does not exist.", "NotFoundError", param="model"
            )
            return
        refused = refusal(request, self.options.max_model_len)
        if refused is not None:
            message, param = refused
            await send_error(send, 400, message, "BadRequestError", param=param)
            return
        if request.guided_json is not None:
            log.warning("guided_json is ignored, as vLLM ignores it: use structured_outputs")
        try:
            plan = make_plan(
                request, self.options.max_model_len, self.scheduler.kv_cache_tokens, self.filler
            )
        except SchemaError as exc:
            await send_error(send, 400, f"Grammar error: {exc}", "BadRequestError")
            return
        except TooLong as exc:
            await send_error(send, 400, str(exc), "BadRequestError", param="input_tokens")
            return
        # vLLM answers with the engine's first served name whatever alias was asked for.
        model = self.names[0]
        fault = self.faults.draw()
        if fault.error:
            await send_error(send, 500, "Simulated engine error.", "InternalServerError")
            return
        watch = Watch(receive)
        if request.stream:
            include_usage = bool(request.stream_options and request.stream_options.include_usage)
            await self._stream(send, watch, model, plan, fault, include_usage, request.n)
        else:
            await self._complete(send, watch, model, plan, fault, request.n)

    async def _complete(
        self, send: Send, watch: Watch, model: str, plan: Plan, fault: Draw, n: int = 1
    ) -> None:
        """One answer; `n` choices carry the same text (the simulator decodes once)."""
        run = Run(self, watch, plan)
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
            body = encode(
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
                    usage=token_usage(plan.prompt, n * len(plan.tokens)),
                )
            )
            if fault.malformed and not plan.is_json:
                body = body[: len(body) // 2]
            watch.done = True
            await send_bytes(send, 200, body, JSON, MARK)
        except asyncio.CancelledError:
            if not watch.aborted():
                raise
        finally:
            watch.close()
            run.finish()

    async def _stream(
        self,
        send: Send,
        watch: Watch,
        model: str,
        plan: Plan,
        fault: Draw,
        include_usage: bool,
        n: int = 1,
    ) -> None:
        """vLLM's chunk sequence: per choice a role chunk with empty content, then content
        chunks, the last with its finish reason; then the usage chunk when asked for."""
        await send(response_start(200, SSE_HEADERS))
        chunk = Chunker(self._next_id(), model, n, include_usage)
        tokens = plan.tokens
        total = len(tokens)
        middle = total // 2
        run = Run(self, watch, plan)
        try:
            await run.start()
            await more(send, chunk.roles())
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
                    await more(send, chunk.broken(piece))
                else:
                    await more(send, chunk(piece, finish=plan.finish_reason if last else None))
                if fault.stall and sent <= middle < end:
                    await run.stall(self.faults.stall_s)
                sent = end
            if include_usage:
                await more(send, chunk.usage(token_usage(plan.prompt, n * total)))
            watch.done = True
            await send(response_body(DONE))
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
