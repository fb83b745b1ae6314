"""The operations page at `/ui`, and the JSON it reads at `/admin/overview` and `/admin/history`.

The page (HTML, CSS, JS shipped in `appliance/ui/static/`) is open like `/health`: it holds no data
and works air-gapped, with nothing fetched from elsewhere. Its data routes live under `/admin`,
behind the API keys; the page sends the key the operator typed as a bearer header, kept in the
browser tab's sessionStorage, never in a URL.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from litestar import Request, Response, Router, get
from litestar.config.app import AppConfig

from appliance.api.auth import api_keys
from appliance.errors import NotFound
from appliance.monitor.periodic import Periodic
from appliance.services import Services
from appliance.ui.bench_digest import BenchDigest
from appliance.ui.history import CountSource, History
from appliance.ui.overview import Overview

ASSETS = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
}
# Everything from this origin; inline styles only for a benchmark report shown in the page.
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def _asset(name: str) -> str:
    return resources.files("appliance.ui").joinpath("static", name).read_text(encoding="utf-8")


@get("/ui", include_in_schema=False)
async def page() -> Response[str]:
    return Response(_asset("index.html"), media_type="text/html", headers=SECURITY_HEADERS)


@get("/ui/static/{name:str}", include_in_schema=False)
async def asset(name: str) -> Response[str]:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No asset `{name}`.")
    return Response(_asset(name), media_type=media_type, headers=SECURITY_HEADERS)


@get("/ui/session", include_in_schema=False)
async def session(request: Request[Any, Any, Any]) -> dict[str, bool]:
    """Whether the page must ask for a key (no data here: a refused request says as much)."""
    services: Services = request.app.state.services
    return {"key_required": bool(api_keys(services.config))}


def _overview(request: Request[Any, Any, Any]) -> Overview:
    overview: Overview = request.app.state.ui_overview
    return overview


@get("/overview", summary="Everything the operations page shows, in one document")
async def overview(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return await _overview(request).document()


@get("/history", summary="Per-agent P95 samples of the last hour, with the expected bands")
async def history(request: Request[Any, Any, Any]) -> dict[str, Any]:
    return _overview(request).history_document()


ops_router = Router(path="/admin", route_handlers=[overview, history], tags=["admin"])


def ui_extension(app_config: AppConfig, services: Services) -> None:
    """An `Extension` for `create_app`: the page, its data routes and the history sampler. Put it
    after the benchmarks' extension, whose service it reads."""
    gates = services.load.admission
    counts = CountSource(
        services.config,
        services.load.recorder,
        lambda: list(gates.gates.values()) if gates is not None else [],
    )
    hist = History(
        services.load.latency, counts, interval_s=services.config.server.history_interval_s
    )
    bench = BenchDigest(app_config.state.get("bench"))
    services.metric_sources.append(bench.metrics)

    async def tick() -> None:
        hist.sample()
        await bench.refresh()

    sampler = Periodic("ops-history", hist.interval_s, tick)

    async def start() -> None:
        sampler.start()

    services.on_start.append(start)
    services.on_stop.append(sampler.stop)
    app_config.route_handlers.extend([page, asset, session, ops_router])
    app_config.state["ui_overview"] = Overview(services, hist, bench)
