"""The gateway over replicas: the next replica before the next model, breakers per replica, and
the balancer's counts kept straight when calls fail."""

from __future__ import annotations

import msgspec
import pytest

from appliance.config.schema import Config, EngineConfig
from appliance.errors import EngineUnavailable
from appliance.gateway.gateway import Gateway
from appliance.load.admission import AdmissionController
from appliance.load.priority import Priority
from tests.unit.gateway.test_gateway_admission import body, config, gateway

GUARD = "llama-3.1-8b-instruct"


def with_replica(cfg: Config) -> Config:
    first = next(e for e in cfg.engines if e.id == "llama-8b")
    second: EngineConfig = msgspec.structs.replace(
        first, id="llama-8b-b", port=(first.port or 0) + 1000
    )
    return msgspec.structs.replace(cfg, engines=(*cfg.engines, second))


def replica_gateway() -> tuple[Gateway, AdmissionController]:
    cfg = with_replica(config())
    admission = AdmissionController(cfg, [e.id for e in cfg.engines])
    return gateway(cfg, [0.0], admission=admission), admission


async def test_both_replicas_are_tried_before_the_fallback_model() -> None:
    gw, admission = replica_gateway()
    assert gw.replicas(GUARD) == ("llama-8b", "llama-8b-b")
    with pytest.raises(EngineUnavailable) as caught:
        await gw.dispatch(gw.route("guardrail"), body, priority=Priority.GUARDRAIL)
    message = caught.value.message
    tried = [message.index(f"{GUARD} on llama-8b:"), message.index(f"{GUARD} on llama-8b-b:")]
    assert max(tried) < message.index("qwen-2.5-32b-instruct: engine unreachable")
    assert all(gate.in_flight == 0 for gate in admission.gates.values())
    assert all(n == 0 for n in gw.balancer.in_flight.values())  # failed calls are not counted
    assert all(n == 0 for n in gw.balancer.served.values())
    await gw.aclose()


async def test_an_open_breaker_on_one_replica_sends_the_request_to_the_other() -> None:
    gw, admission = replica_gateway()
    gw.breakers["llama-8b"].record_failure()  # threshold 1: open
    with pytest.raises(EngineUnavailable) as caught:
        await gw.dispatch(gw.route(GUARD), body, priority=Priority.INTERACTIVE)
    assert f"{GUARD} on llama-8b: circuit breaker open" in caught.value.message
    assert f"{GUARD} on llama-8b-b: engine unreachable" in caught.value.message
    assert admission.gates["llama-8b"].admitted[Priority.INTERACTIVE] == 0
    assert admission.gates["llama-8b-b"].admitted[Priority.INTERACTIVE] == 1
    await gw.aclose()
