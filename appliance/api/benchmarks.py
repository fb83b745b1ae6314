"""`/benchmarks`: list, show, report and start benchmark runs.

`BenchmarksPlugin` adds the routes and hands the handlers the `BenchService` the composition root
built (started and stopped with the other background parts). Errors are appliance errors, mapped
to HTTP in `api/errors.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Response, Router, get, post
from litestar.config.app import AppConfig
from litestar.di import NamedDependency, Provide
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter
from litestar.plugins import InitPluginProtocol

from appliance.bench.execute import RunParams
from appliance.bench.report import MEDIA_TYPES
from appliance.bench.service import BenchService
from appliance.errors import BadRequest, BenchmarksUnavailable


@get("/")
async def list_benchmarks(
    bench: NamedDependency[BenchService],
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 50,
    kind: FromQuery[str | None] = None,
) -> dict[str, Any]:
    runs = await bench.list(limit=limit, kind=kind)
    return {"object": "list", "data": [msgspec.to_builtins(r) for r in runs]}


# Run ids are SQLite integers: a larger number is a 400, not an overflow inside the store.
RunId = Annotated[int, PathParameter(ge=1, le=2**63 - 1)]


@get("/{run_id:int}")
async def get_benchmark(bench: NamedDependency[BenchService], run_id: RunId) -> dict[str, Any]:
    return await bench.get(run_id)


@get("/{run_id:int}/report")
async def benchmark_report(
    bench: NamedDependency[BenchService],
    run_id: RunId,
    fmt: Annotated[str, QueryParameter(name="format")] = "json",
) -> Response[str]:
    if fmt not in MEDIA_TYPES:
        raise BadRequest(f"Unknown report format {fmt!r}; use json, md or html.")
    body = await bench.report(run_id, fmt)  # type: ignore[arg-type]
    return Response(content=body, media_type=MEDIA_TYPES[fmt])


@post("/", status_code=202)
async def start_benchmark(
    bench: NamedDependency[BenchService], data: JSONBody[RunParams | None] = None
) -> dict[str, Any]:
    params = data or RunParams()
    run_id = await bench.run(params.kind, params, trigger="api")
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


class BenchmarksPlugin(InitPluginProtocol):
    """`/benchmarks` over the appliance's `BenchService` (503 on every route without one)."""

    def __init__(self, service: BenchService | None) -> None:
        self.service = service

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(benchmarks_router)
        app_config.dependencies["bench"] = Provide(self._bench, sync_to_thread=False)
        return app_config

    def _bench(self) -> BenchService:
        if self.service is None:
            raise BenchmarksUnavailable("Benchmarks are not running in this appliance.")
        return self.service
