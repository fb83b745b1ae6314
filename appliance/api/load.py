"""Load control's plug-in to the app: `GET /admin/load`, and the part its handler reads."""

from __future__ import annotations

from typing import Any

from litestar import get
from litestar.config.app import AppConfig
from litestar.di import NamedDependency
from litestar.plugins import InitPluginProtocol

from appliance.api.parts import part
from appliance.load.control import LoadControl


@get(
    "/admin/load",
    summary="Admission, engine metrics, latency windows, GPUs and host",
    tags=["admin"],
)
async def load_view(load_control: NamedDependency[LoadControl]) -> dict[str, Any]:
    sections = load_control.detailed()
    return {**sections.pop("load"), **sections}


class LoadControlPlugin(InitPluginProtocol):
    """Adds the operator's view of admission and the monitors, over the appliance's one
    `LoadControl`."""

    def __init__(self, load: LoadControl) -> None:
        self.load = load

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.route_handlers.append(load_view)
        app_config.dependencies["load_control"] = part(self.load)
        return app_config
