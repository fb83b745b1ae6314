"""`create_app()`: the Litestar application, its routes, and the lifespan that owns the services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.openapi import OpenAPIConfig

from appliance import __version__
from appliance.api.admin import AdminController
from appliance.api.agents import AgentsController
from appliance.api.auth import auth_middleware
from appliance.api.bodies import ApplianceRequest
from appliance.api.chat import chat_completions
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.health import HealthController
from appliance.api.metrics import metrics
from appliance.api.models import list_models
from appliance.api.openapi import DescribedJson
from appliance.config.schema import Config
from appliance.services import Services

# Concerns that add routes register a function here: (app config, services) -> None.
Extension = Callable[[AppConfig, Services], None]


def create_app(
    config: Config,
    services: Services | None = None,
    *,
    extensions: tuple[Extension, ...] = (),
) -> Litestar:
    """Build the app. `services` defaults to real engines from `config`, started in the lifespan."""
    built = services or Services.from_config(config)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = built
        await built.start()
        try:
            yield
        finally:
            await built.stop()

    app_config = AppConfig(
        route_handlers=[
            chat_completions,
            AgentsController,
            list_models,
            HealthController,
            AdminController,
            metrics,
        ],
        lifespan=[lifespan],
        middleware=[auth_middleware(config)],
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
    for extend in extensions:
        extend(app_config, built)
    return Litestar.from_config(app_config)
