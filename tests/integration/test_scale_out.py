"""Three appliance hosts behind HAProxy, each in a network namespace of its own.

Real `appliance serve` on simulator engines in each namespace, a real haproxy with the
configuration the `kai_frontdoor` role renders, and the real openai client at the front door. Load
spreads over the hosts; a host that gets SIGTERM under load drains without a failed request; a host
killed with SIGKILL fails at most the requests it had in flight; crisis messages get their
resources through the front door throughout. Needs root (namespaces), `ip`, haproxy and
ansible-playbook, which `.ci/setup-ops.sh` installs.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import openai
import pytest

from benchmarks.cluster import API_KEY, Cluster, tool

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("haproxy") is None,
        reason="ip and haproxy are needed (.ci/setup-ops.sh installs haproxy)",
    ),
    pytest.mark.skipif(
        tool("ansible-playbook") is None,
        reason="ansible-core is not installed (.ci/setup-ops.sh installs it)",
    ),
]

CRISIS = "I am going to kill myself"


@dataclass
class Outcome:
    started: float
    ended: float
    ok: bool
    crisis: bool
    error: str = ""


@dataclass
class Load:
    """Workers sending chat requests through the front door, and one sending crisis messages,
    until stopped; every request's times and outcome are kept."""

    url: str
    workers: int = 6
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Load:
        for _ in range(self.workers):
            self._threads.append(threading.Thread(target=self._work, args=(False,)))
        self._threads.append(threading.Thread(target=self._work, args=(True,)))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _work(self, crisis: bool) -> None:
        client = openai.OpenAI(
            base_url=self.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30
        )
        text = CRISIS if crisis else "Help me plan a calm evening."
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                reply = client.chat.completions.create(
                    model="kai", messages=[{"role": "user", "content": text}], max_tokens=24
                )
                content = reply.choices[0].message.content or ""
                ok = "988" in content if crisis else bool(content)
                error = "" if ok else "no crisis resources in the reply"
            except openai.OpenAIError as exc:
                ok, error = False, f"{type(exc).__name__}: {exc}"
            self.outcomes.append(Outcome(started, time.monotonic(), ok, crisis, error))
            if crisis:
                time.sleep(0.05)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("cluster")
    with Cluster(directory, hosts=3, netns=True, time_scale=0.05, drain_s=4.0) as c:
        yield c


def test_load_spreads_over_the_hosts(cluster: Cluster) -> None:
    before = [host.served() for host in cluster.members]
    with Load(cluster.url) as load:
        deadline = time.monotonic() + 60
        while len([o for o in load.outcomes if not o.crisis]) < 90:
            assert time.monotonic() < deadline, "90 requests took over 60 s"
            time.sleep(0.05)
    assert load.failures() == []
    taken = [host.served() - b for host, b in zip(cluster.members, before, strict=True)]
    total = sum(taken)
    assert total >= 90
    assert min(taken) >= 0.15 * total, taken


def test_sigterm_under_load_fails_no_request(cluster: Cluster) -> None:
    host = cluster.members[0]
    with Load(cluster.url) as load:
        time.sleep(1.0)
        host.signal(signal.SIGTERM)
        assert host.proc is not None
        # HAProxy takes the host out (its readiness check fails, its agent says drain) while the
        # host still runs: the drain, not a refused connection, moves the traffic.
        deadline = time.monotonic() + cluster.drain_s
        while cluster.server_states().get(host.name, "").startswith("UP"):
            assert time.monotonic() < deadline, "HAProxy still sends to the draining host"
            time.sleep(0.05)
        host.proc.wait(timeout=cluster.drain_s + 30)  # drains, then stops
        time.sleep(1.0)
    assert load.failures() == [], load.failures()[:3]
    assert len(load.outcomes) > 20
    assert sum(o.crisis for o in load.outcomes) > 5


def test_sigkill_under_load_fails_only_requests_in_flight_on_it(cluster: Cluster) -> None:
    host = cluster.members[1]
    with Load(cluster.url) as load:
        time.sleep(1.0)
        killed_at = time.monotonic()
        host.signal(signal.SIGKILL)
        assert host.proc is not None
        host.proc.wait(timeout=10)
        # At least 3 s of load after the kill, and longer on a slow host until enough has been
        # answered to judge: HAProxy needs its failed checks before it marks the host down.
        deadline = killed_at + 60
        while time.monotonic() < deadline:
            after = [o for o in list(load.outcomes) if o.started > killed_at]
            enough = len(after) > 10 and sum(o.crisis for o in after) > 3
            if enough and time.monotonic() > killed_at + 3:
                break
            time.sleep(0.1)
    late = [o for o in load.failures() if o.started > killed_at]
    assert late == [], late[:3]
    assert len([o for o in load.failures() if o.crisis]) <= 1
    after = [o for o in load.outcomes if o.started > killed_at]
    assert len(after) > 10 and sum(o.crisis for o in after) > 3


def test_the_last_host_serves_alone(cluster: Cluster) -> None:
    assert cluster.server_states()[cluster.members[2].name].startswith("UP")
    client = openai.OpenAI(base_url=cluster.url + "/v1", api_key=API_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="kai", messages=[{"role": "user", "content": CRISIS}]
    )
    assert "988" in (reply.choices[0].message.content or "")


def test_namespaces_are_gone_after_the_cluster_closes(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, hosts=1, netns=True)
    cluster._make_hosts()
    (namespace,) = cluster._namespaces
    cluster.close()
    listed = os.popen("ip netns list").read()  # noqa: S605 (fixed command)
    assert namespace not in listed
