"""The appliance's core parts and how they are assembled over a set of engines.

`assemble` builds them in dependency order, each with its collaborators given to its constructor:

    engine clients -> liveness prober, load control (admission, recorder, monitors)
                   -> gateway(admission, recorder, known_down) -> agents(gateway)

The API's handlers and the features (`appliance.root`) read the `Appliance` it returns.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from appliance.agents.orchestrator import Orchestrator
from appliance.config.schema import Config
from appliance.engines.base import Endpoint
from appliance.engines.supervisor import Supervisor
from appliance.gateway.client import engine_clients
from appliance.gateway.gateway import Gateway
from appliance.gateway.liveness import LivenessProber
from appliance.load.control import LoadControl
from appliance.notify import Notifier


class Appliance:
    """The core parts, typed; built by `assemble`. Only `draining` changes after construction
    (set by the server on SIGTERM)."""

    def __init__(
        self,
        config: Config,
        endpoints: Sequence[Endpoint],
        *,
        gateway: Gateway,
        liveness: LivenessProber,
        load: LoadControl,
        agents: Orchestrator,
        supervisor: Supervisor | None,
        notifier: Notifier,
    ) -> None:
        self.config = config
        self.endpoints = list(endpoints)
        self.gateway = gateway
        self.liveness = liveness
        self.load = load
        self.agents = agents
        self.supervisor = supervisor
        self.notifier = notifier
        self.started_at = time.time()
        self.engines_started = asyncio.Event()
        self.ready = asyncio.Event()
        # Set on SIGTERM: /health/ready answers 503 while requests are still served.
        self.draining = False


def assemble(
    config: Config,
    endpoints: Sequence[Endpoint],
    *,
    supervisor: Supervisor | None = None,
    notifier: Notifier | None = None,
    liveness_interval_s: float = 5.0,
) -> Appliance:
    """The core over the given engines (launched by `supervisor`, or already running)."""
    clients = engine_clients(endpoints, config.llm)
    liveness = LivenessProber(clients, interval_s=liveness_interval_s)
    load = LoadControl(config, clients)
    gateway = Gateway(
        config,
        clients,
        admission=load.gateway_admission,
        recorder=load.recorder,
        known_down=liveness.known_down,
    )
    return Appliance(
        config,
        endpoints,
        gateway=gateway,
        liveness=liveness,
        load=load,
        # The four agents over the gateway; refuses a locale without crisis resources.
        agents=Orchestrator(config, gateway),
        supervisor=supervisor,
        notifier=notifier or Notifier(),
    )
