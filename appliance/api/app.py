"""`create_app()`: the Litestar application over a wired appliance.

The parts come from the composition root (`appliance.root`); handlers receive them through
Litestar's dependency injection, features add their routes as plugins, and the lifespan runs the
background parts (`root.Lifecycle`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig
from litestar.plugins import PluginProtocol
from litestar.types import LifeSpanReceive, LifeSpanScope, LifeSpanSend, Receive, Scope, Send

from appliance import __version__
from appliance.api.admin import AdminController
from appliance.api.agents import AgentsController
from appliance.api.auth import AuthMiddleware, Guard, api_keys, guard_for
from appliance.api.benchmarks import BenchmarksPlugin
from appliance.api.bodies import ApplianceRequest
from appliance.api.chat import chat_route
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.health import HealthController
from appliance.api.load import LoadControlPlugin
from appliance.api.metrics import metrics
from appliance.api.models import list_models
from appliance.api.openapi import DescribedJson
from appliance.api.parts import part
from appliance.root import Lifecycle, Wiring
from appliance.ui.routes import OpsPagePlugin


def create_app(wiring: Wiring, *, lifecycle: Lifecycle | None = None) -> Litestar:
    """The app over `wiring`; its lifespan runs `lifecycle` (by default, one over the wiring)."""
    appliance = wiring.appliance
    config = appliance.config
    running = lifecycle or Lifecycle(appliance, wiring.background)

    @asynccontextmanager
    async def lifespan(_app: Litestar) -> AsyncIterator[None]:
        async with running:
            yield

    plugins: list[PluginProtocol] = [LoadControlPlugin(appliance.load)]
    if wiring.bench is not None:
        plugins.append(BenchmarksPlugin(wiring.bench))
    plugins.append(OpsPagePlugin(wiring.ops, key_required=bool(api_keys(config))))
    # Named so that no request body field shares a name: Litestar reads a validation error on
    # a field named like a dependency as a server error.
    parts: dict[str, Any] = {
        "appliance": appliance,
        "gateway": appliance.gateway,
        "orchestrator": appliance.agents,
        "registry": wiring.registry,
    }
    app_config = AppConfig(
        route_handlers=[
            chat_route(appliance.gateway, appliance.agents, config.agents),
            AgentsController,
            list_models,
            HealthController,
            AdminController,
            metrics,
        ],
        dependencies={name: part(value) for name, value in parts.items()},
        plugins=plugins,
        lifespan=[lifespan],
        exception_handlers=dict(EXCEPTION_HANDLERS),  # type: ignore[arg-type]
        # Bodies decoded in one place: nesting cap, errors that say what and where.
        request_class=ApplianceRequest,
        openapi_config=OpenAPIConfig(
            title="Kai LLM appliance",
            version=__version__,
            description="OpenAI-compatible API and agent routes for the Kai platform.",
            path="/schema",
            # The document as the API answers (OpenAI errors, the chat passthrough): api/openapi.py
            render_plugins=[DescribedJson()],
        ),
        debug=False,
        # JSON bodies (agent histories, benchmark parameters) stay well under this.
        request_max_body_size=4 * 1024 * 1024,
    )
    settings = {f.name: getattr(app_config, f.name) for f in fields(AppConfig)}
    return ApplianceApp(guard=guard_for(config), **settings)


class ApplianceApp(Litestar):
    """Litestar, with the API keys (`api/auth.py`) checked before any routing.

    Outside the router rather than as route middleware: a route with middleware gets a second
    exception layer around every `send`, which a streamed answer pays for on each chunk.
    """

    def __init__(self, *, guard: Guard, **settings: Any) -> None:
        super().__init__(**settings)
        self._guarded = AuthMiddleware(super().__call__, guard)

    async def __call__(
        self,
        scope: Scope | LifeSpanScope,
        receive: Receive | LifeSpanReceive,
        send: Send | LifeSpanSend,
    ) -> None:
        if scope["type"] == "lifespan":
            await super().__call__(scope, receive, send)
            return
        await self._guarded(scope, receive, send)  # type: ignore[arg-type]
