"""Several appliance hosts behind a real HAProxy, on one machine: for the multi-host test and the
scale-out sweep.

Each host is `appliance serve` on the simulator: one engine serving every agent's model (fewer
processes, so the engines and not the CPU bound a small machine). Hosts either live in network
namespaces of their own (`ip netns` plus a veth pair each, made here as root, addresses in
10.X.N.0/30 on the pairs only (X from 200 to 249, drawn per cluster), removed on exit whatever happens), or share loopback on ports of
their own. HAProxy runs with the configuration the `kai_frontdoor` Ansible role renders for these
hosts (ansible-playbook against localhost, writing into a scratch directory).

Self-contained (no sibling imports), so tests and benchmark scripts can both use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ANSIBLE_DIR = ROOT / "ansible"
API_KEY = "cluster-test-key"

# One simulated 8B engine serves every agent (the Guardrail's model, so the Guardrail's sweep meets
# its own latency); the profile is appended to a copy of the shipped models.toml.
PROFILE = """
[profiles.cluster]
description = "One simulated engine per host serving every agent's model (scale-out tests)"
gpus = "none"
default_model = "llama-3.1-8b-instruct"
agents.kai = {{ model = "llama-3.1-8b-instruct" }}
agents.guardrail = {{ model = "llama-3.1-8b-instruct" }}
agents.genetic = {{ model = "llama-3.1-8b-instruct" }}
agents.wellness = {{ model = "llama-3.1-8b-instruct" }}

[[profiles.cluster.engines]]
id = "sim"
kind = "sim"
model = "llama-3.1-8b-instruct"
port = {engine_port}
max_model_len = 8192
max_num_seqs = {max_num_seqs}
sim.time_scale = {time_scale}
"""


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_FLOOR = _ephemeral_floor()
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback port free now, for a server a test or benchmark starts later (the one
    implementation: `tests/support/running.py` and `loopback.py` re-export it). Below the kernel's
    ephemeral range: a port from bind(0) can be taken, before the server binds it, as the source
    port of any outgoing connection on the host, and an appliance then fails to start with
    "address already in use". Below that range only explicit binds compete; none is handed out
    twice by this process."""
    rng = random.SystemRandom()
    low = max(1024, _EPHEMERAL_FLOOR - 12_000)
    if _EPHEMERAL_FLOOR - low < 1_000:  # no room below the range: the kernel's choice
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    while True:
        port = rng.randrange(low, _EPHEMERAL_FLOOR)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port


def closed_port() -> int:
    """A loopback port nothing listens on, for an engine that must refuse every connection at once
    (a model down); a free port from `free_port`, checked."""
    port = free_port()
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            raise OSError(f"port {port} has a listener")
    return port


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def tool(name: str) -> str | None:
    """A command beside this Python (a venv's bin) first, else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


@dataclass
class Host:
    name: str
    address: str
    port: int
    agent_port: int
    engine_port: int
    directory: Path
    netns: str | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def log(self) -> str:
        path = self.directory / "appliance.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
        request = urllib.request.Request(  # noqa: S310 (http to a test host)
            self.url + path, headers={"Authorization": f"Bearer {API_KEY}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except OSError:
            return 0, b""

    def served(self) -> float:
        """Requests this host's engines answered (its per-engine counters in /metrics)."""
        status, body = self.get("/metrics")
        if status != 200:
            return 0.0
        pattern = rb"^appliance_engine_requests_total\{[^}]*\} (\S+)$"
        return sum(float(m) for m in re.findall(pattern, body, re.M))

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)


@dataclass
class Cluster:
    """`hosts` appliance hosts and HAProxy in front; a context manager that cleans up everything."""

    directory: Path
    hosts: int = 3
    netns: bool = False
    time_scale: float = 0.01
    max_num_seqs: int = 16
    drain_s: float = 3.0
    check_interval: str = "500ms"
    members: list[Host] = field(default_factory=list)
    front_port: int = 0
    stats_port: int = 0
    haproxy: subprocess.Popen[bytes] | None = None
    _tag: str = field(default_factory=lambda: secrets.token_hex(2))
    _namespaces: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.front_port}"

    def __enter__(self) -> Cluster:
        try:
            self._make_hosts()
            for host in self.members:
                self._start(host)
            for host in self.members:
                self.wait_ready(host)
            self._start_haproxy()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- hosts ------------------------------------------------------------------------------------

    def _make_hosts(self) -> None:
        for index in range(1, self.hosts + 1):
            name = f"host{index}"
            directory = self.directory / name
            directory.mkdir(parents=True, exist_ok=True)
            if self.netns:
                namespace = f"kai{self._tag}h{index}"
                address = self._veth(namespace, index)
                host = Host(name, address, 8000, 8001, 8101, directory, namespace)
            else:
                host = Host(name, "127.0.0.1", free_port(), free_port(), free_port(), directory)
            self.members.append(host)

    def _veth(self, namespace: str, index: int) -> str:
        """A namespace joined to this one by a veth pair: .1 here, .2 inside; loopback up."""
        outside, inside = f"kv{self._tag}{index}a", f"kv{self._tag}{index}b"
        subnet = f"10.{200 + int(self._tag, 16) % 50}"  # two clusters at once rarely collide
        here, there = f"{subnet}.{index}.1", f"{subnet}.{index}.2"
        run("ip", "netns", "add", namespace)
        self._namespaces.append(namespace)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", namespace)
        run("ip", "addr", "add", f"{here}/30", "dev", outside)
        run("ip", "link", "set", outside, "up")
        run("ip", "-n", namespace, "addr", "add", f"{there}/30", "dev", inside)
        run("ip", "-n", namespace, "link", "set", inside, "up")
        run("ip", "-n", namespace, "link", "set", "lo", "up")
        return there

    def _config(self, host: Host) -> Path:
        text = (ROOT / "models.toml").read_text()
        server = (
            f'host = "{host.address}"\nport = {host.port}\n'
            f'data_dir = "{host.directory / "var"}"\n'
            f"drain_s = {self.drain_s}\nlb_agent_port = {host.agent_port}\n"
        )
        text = re.sub(
            r'^host = "127.0.0.1"\nport = 8000\ndata_dir = "var"\n',
            server,
            text,
            count=1,
            flags=re.M,
        )
        text = re.sub(r"^drain_s = 0.0\nlb_agent_port = 0\n", "", text, count=1, flags=re.M)
        text = re.sub(r'^profile = "sim"$', 'profile = "cluster"', text, count=1, flags=re.M)
        text = re.sub(
            r"^(\[bench\]\n(?:[^\[\n].*\n|\n)*?)enabled = true$",
            r"\1enabled = false",
            text,
            count=1,
            flags=re.M,
        )
        text += PROFILE.format(
            engine_port=host.engine_port,
            max_num_seqs=self.max_num_seqs,
            time_scale=self.time_scale,
        )
        path = host.directory / "models.toml"
        path.write_text(text)
        return path

    def _start(self, host: Host) -> None:
        config = self._config(host)
        argv = [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)]
        if host.netns:
            argv = ["ip", "netns", "exec", host.netns, *argv]
        env = {**os.environ, "APPLIANCE_API_KEYS": API_KEY}
        host.proc = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(host.directory / "appliance.log").open("wb"),
            start_new_session=True,
        )

    def wait_ready(self, host: Host, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert host.proc is not None
            if host.proc.poll() is not None:
                raise RuntimeError(f"{host.name} exited with {host.proc.returncode}:\n{host.log()}")
            if host.get("/health/ready", timeout=2)[0] == 200:
                return
            time.sleep(0.1)
        raise TimeoutError(f"{host.name} not ready after {timeout} s:\n{host.log()}")

    # -- HAProxy ------------------------------------------------------------------------------------

    def render_haproxy(self) -> Path:
        """haproxy.cfg as the kai_frontdoor role renders it for these hosts."""
        playbook = tool("ansible-playbook")
        if playbook is None:
            raise RuntimeError("ansible-playbook is not installed (.ci/setup-ops.sh installs it)")
        self.front_port, self.stats_port = free_port(), free_port()
        root = self.directory / "front"
        inventory = {
            "kai_appliance": {
                "hosts": {
                    h.name: {
                        "kai_frontdoor_address": h.address,
                        "kai_frontdoor_backend_port": h.port,
                        "kai_frontdoor_agent_port": h.agent_port,
                    }
                    for h in self.members
                }
            },
            "kai_frontdoor": {"hosts": {"localhost": {"ansible_connection": "local"}}},
        }
        variables = {
            "ansible_become": False,
            "ansible_python_interpreter": sys.executable,
            "kai_frontdoor_root": str(root),
            "kai_frontdoor_manage_service": False,
            "kai_frontdoor_packages": [],
            "kai_frontdoor_haproxy_binary": shutil.which("haproxy") or "haproxy",
            "kai_frontdoor_chroot": "",
            "kai_frontdoor_user": "",
            "kai_frontdoor_admin_socket": "",
            "kai_frontdoor_log": "",
            "kai_frontdoor_bind_address": "127.0.0.1",
            "kai_frontdoor_port": self.front_port,
            "kai_frontdoor_stats_port": self.stats_port,
            "kai_frontdoor_check_interval": self.check_interval,
            "kai_frontdoor_agent_interval": self.check_interval,
        }
        (self.directory / "inventory.json").write_text(json.dumps(inventory))
        (self.directory / "vars.json").write_text(json.dumps(variables))
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCAL_TEMP": str(self.directory / "ansible-local"),
            "ANSIBLE_REMOTE_TMP": str(self.directory / "ansible-remote"),
        }
        result = subprocess.run(
            [
                playbook,
                "-i",
                str(self.directory / "inventory.json"),
                "-e",
                f"@{self.directory / 'vars.json'}",
                "--limit",
                "kai_frontdoor",
                "site.yml",
            ],
            cwd=ANSIBLE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"ansible-playbook failed:\n{result.stdout[-4000:]}{result.stderr}")
        return root / "etc/haproxy/haproxy.cfg"

    def _start_haproxy(self) -> None:
        config = self.render_haproxy()
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed (.ci/setup-ops.sh installs it)")
        self.haproxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=(self.directory / "haproxy.log").open("wb"),
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.haproxy.poll() is not None:
                log = (self.directory / "haproxy.log").read_text(errors="replace")
                raise RuntimeError(f"haproxy exited with {self.haproxy.returncode}:\n{log}")
            if self.servers_up() == len(self.members):
                return
            time.sleep(0.1)
        raise TimeoutError(f"HAProxy did not see every host up: {self.server_states()}")

    def server_states(self) -> dict[str, str]:
        """Each host's state on HAProxy's statistics page (CSV): UP, DOWN, DRAIN, ..."""
        url = f"http://127.0.0.1:{self.stats_port}/;csv"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                rows = response.read().decode().splitlines()
        except OSError:
            return {}
        header = rows[0].lstrip("# ").split(",")
        states = {}
        for row in rows[1:]:
            values = dict(zip(header, row.split(","), strict=False))
            if values.get("pxname") == "kai_appliances" and values.get("svname") not in (
                "FRONTEND",
                "BACKEND",
            ):
                states[values["svname"]] = values.get("status", "")
        return states

    def servers_up(self) -> int:
        return sum(1 for state in self.server_states().values() if state.startswith("UP"))

    # -- cleanup ----------------------------------------------------------------------------------

    def close(self) -> None:
        processes = [h.proc for h in self.members if h.proc is not None]
        if self.haproxy is not None:
            processes.append(self.haproxy)
        for proc in processes:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for namespace in self._namespaces:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        self._namespaces.clear()
