"""The balancer: replicas ranked by load, ties in turn, a conversation kept on its replica."""

from __future__ import annotations

from collections import Counter

from appliance.gateway.replicas import Balancer

REPLICAS = ["a", "b"]


def idle(_engine: str) -> float:
    return 0.0


def test_idle_replicas_take_turns() -> None:
    balancer = Balancer(REPLICAS)
    firsts = Counter(balancer.order(REPLICAS, idle)[0] for _ in range(100))
    assert firsts == {"a": 50, "b": 50}


def test_idle_replicas_take_turns_per_model_when_models_interleave() -> None:
    balancer = Balancer(["a", "b", "c", "d"])
    firsts = Counter()
    for _ in range(50):
        firsts[balancer.order(["a", "b"], idle)[0]] += 1
        firsts[balancer.order(["c", "d"], idle)[0]] += 1
    assert firsts == {"a": 25, "b": 25, "c": 25, "d": 25}


def test_the_replica_with_fewer_requests_in_flight_goes_first() -> None:
    balancer = Balancer(REPLICAS)
    balancer.started("a")
    balancer.started("a")
    assert [balancer.order(REPLICAS, idle)[0] for _ in range(4)] == ["b"] * 4
    balancer.finished("a")
    balancer.finished("a")
    assert {balancer.order(REPLICAS, idle)[0] for _ in range(4)} == {"a", "b"}


def test_saturation_weighs_in_flight() -> None:
    balancer = Balancer(REPLICAS)
    balancer.started("a")  # a: (1 + 1) * (1 + 0) = 2
    balancer.started("b")
    balancer.started("b")  # b: (2 + 1) * (1 + 0) = 3 ...
    assert balancer.order(REPLICAS, idle)[0] == "a"
    # ... but a saturated `a` costs (1 + 1) * (1 + 0.9) = 3.8 > 3.
    assert balancer.order(REPLICAS, lambda e: 0.9 if e == "a" else 0.0)[0] == "b"


def test_a_conversation_keeps_to_one_replica_while_it_is_not_saturated() -> None:
    balancer = Balancer(REPLICAS, sticky_below=0.85)
    homes = {balancer.order(REPLICAS, idle, "user-7")[0] for _ in range(20)}
    assert len(homes) == 1
    home = homes.pop()
    other = "b" if home == "a" else "a"
    for _ in range(5):
        balancer.started(home)  # busier than the other, but not saturated: still home
    assert balancer.order(REPLICAS, idle, "user-7")[0] == home
    saturated = {balancer.order(REPLICAS, lambda e: 0.9 if e == home else 0.0, "user-7")[0]}
    assert saturated == {other}


def test_conversation_keys_spread_over_replicas() -> None:
    balancer = Balancer(REPLICAS)
    homes = Counter(balancer.order(REPLICAS, idle, f"user-{i}")[0] for i in range(200))
    assert homes["a"] > 60 and homes["b"] > 60


def test_a_single_engine_is_its_own_order() -> None:
    balancer = Balancer(["solo"])
    assert balancer.order(["solo"], idle, "key") == ["solo"]
