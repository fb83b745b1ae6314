"""`/benchmarks`: list, show, report and start benchmark runs.

Handlers find the `BenchService` at `request.app.state.bench`; errors are appliance errors, mapped
to HTTP in `api/errors.py`. `bench_extension` wires the service into `create_app`: built from the
config, started and stopped with the other services.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.config.app import AppConfig
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter

from appliance.bench.execute import RunParams
from appliance.bench.report import MEDIA_TYPES
from appliance.bench.service import BenchService, db_path
from appliance.errors import ApplianceError, BadRequest


class BenchmarksUnavailable(ApplianceError):
    status_code = 503
    error_type = "server_error"
    code = "benchmarks_unavailable"


def _service(request: Request[Any, Any, Any]) -> BenchService:
    service = getattr(request.app.state, "bench", None)
    if service is None:
        raise BenchmarksUnavailable("Benchmarks are not running in this appliance.")
    return service


@get("/")
async def list_benchmarks(
    request: Request[Any, Any, Any],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    kind: FromQuery[str | None] = None,
) -> dict[str, Any]:
    runs = await _service(request).list(limit=limit, kind=kind)
    return {"object": "list", "data": [msgspec.to_builtins(r) for r in runs]}


# Run ids are SQLite integers: a larger number is a 400, not an overflow inside the store.
RunId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


@get("/{run_id:int}")
async def get_benchmark(request: Request[Any, Any, Any], run_id: RunId) -> dict[str, Any]:
    return await _service(request).get(run_id)


@get("/{run_id:int}/report")
async def benchmark_report(
    request: Request[Any, Any, Any],
    run_id: RunId,
    fmt: Annotated[str, QueryParameter(name="format")] = "json",
) -> Response[str]:
    if fmt not in MEDIA_TYPES:
        raise BadRequest(f"Unknown report format {fmt!r}; use json, md or html.")
    body = await _service(request).report(run_id, fmt)  # type: ignore[arg-type]
    return Response(content=body, media_type=MEDIA_TYPES[fmt])


@post("/", status_code=202)
async def start_benchmark(
    request: Request[Any, Any, Any], data: JSONBody[RunParams | None] = None
) -> dict[str, Any]:
    params = data or RunParams()
    service = _service(request)
    run_id = await service.run(params.kind, params, trigger="api")
    return {
        "id": run_id,
        "status": "running",
        "kind": params.kind,
        "links": {"self": f"/benchmarks/{run_id}", "report": f"/benchmarks/{run_id}/report"},
    }


benchmarks_router = Router(
    path="/benchmarks",
    route_handlers=[list_benchmarks, get_benchmark, benchmark_report, start_benchmark],
    tags=["benchmarks"],
)


def bench_extension(live_inflight: Callable[[Any], Callable[[], int]]) -> Callable[..., None]:
    """An `Extension` for `create_app`: `live_inflight(services)` gives the callable that counts
    live (non-benchmark) requests in flight."""

    def extend(app_config: AppConfig, services: Any) -> None:
        from appliance.api.auth import api_keys

        config = services.config
        host = config.server.host if config.server.host not in ("0.0.0.0", "::") else "127.0.0.1"
        keys = api_keys(config)
        service = BenchService(
            config,
            db_path(config),
            f"http://{host}:{config.server.port}/v1",
            keys[0] if keys else "",
            live_inflight(services),
        )
        app_config.route_handlers.append(benchmarks_router)
        app_config.state["bench"] = service
        services.on_start.append(service.start)
        services.on_stop.append(service.stop)

    return extend
