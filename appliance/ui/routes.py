"""The operations page at `/ui`, and the JSON it reads at `/admin/overview` and `/admin/history`.

The page (HTML, CSS, JS shipped in `appliance/ui/static/`) is open like `/health`: it holds no data
and works air-gapped, with nothing fetched from elsewhere. Its data routes live under `/admin`,
behind the API keys; the page sends the key the operator typed as a bearer header, kept in the
browser tab's sessionStorage, never in a URL.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from litestar import Response, Router, get
from litestar.config.app import AppConfig
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.plugins import InitPluginProtocol

from appliance.api.parts import part
from appliance.errors import NotFound
from appliance.ui.page import OpsPage

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
async def asset(name: FromPath[str]) -> Response[str]:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No asset `{name}`.")
    return Response(_asset(name), media_type=media_type, headers=SECURITY_HEADERS)


@get("/ui/session", include_in_schema=False)
async def session(key_required: NamedDependency[bool]) -> dict[str, bool]:
    """Whether the page must ask for a key (no data here: a refused request says as much)."""
    return {"key_required": key_required}


@get("/overview", summary="Everything the operations page shows, in one document")
async def overview(ops: NamedDependency[OpsPage]) -> dict[str, Any]:
    return await ops.overview.document()


@get("/history", summary="Per-agent P95 samples of the last hour, with the expected bands")
async def history(ops: NamedDependency[OpsPage]) -> dict[str, Any]:
    return ops.overview.history_document()


ops_router = Router(path="/admin", route_handlers=[overview, history], tags=["admin"])


class OpsPagePlugin(InitPluginProtocol):
    """The page, its assets and its data routes, with the parts they read."""

    def __init__(self, ops: OpsPage, *, key_required: bool) -> None:
        self.ops = ops
        self.key_required = key_required

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.extend([page, asset, session, ops_router])
        app_config.dependencies["ops"] = part(self.ops)
        app_config.dependencies["key_required"] = part(self.key_required)
        return app_config
