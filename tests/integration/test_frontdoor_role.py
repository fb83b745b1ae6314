"""The `kai_frontdoor` role, applied for real to this machine into a temporary root: the HAProxy
configuration it renders from an inventory of three appliance hosts passes `haproxy -c`, says
what the front door must do, and a second run changes nothing. The package and the service are
left alone (`kai_frontdoor_packages: []`, `kai_frontdoor_manage_service: false`)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_systemd_unit import tool

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
PLAYBOOK = tool("ansible-playbook")
HAPROXY = shutil.which("haproxy")
RECAP = re.compile(
    r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", re.M
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PLAYBOOK is None, reason="ansible-core is not installed (.ci/setup-ops.sh installs it)"
    ),
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/setup-ops.sh)"),
]

HOSTS = {
    "gpu-01.example.internal": {"ansible_host": "10.20.0.11"},
    "gpu-02.example.internal": {"ansible_host": "10.20.0.12", "kai_frontdoor_weight": 50},
    "gpu-03.example.internal": {"kai_frontdoor_address": "10.20.0.13"},
}


@dataclass
class Run:
    rc: int
    output: str

    def changed(self) -> int:
        match = RECAP.search(self.output)
        assert match, self.output[-3000:]
        return int(match[2])


def play(tmp: Path, hosts: dict[str, dict[str, object]], **overrides: object) -> Run:
    inventory = {
        "kai_appliance": {"hosts": hosts},
        "kai_frontdoor": {"hosts": {"localhost": {"ansible_connection": "local"}}},
    }
    variables: dict[str, object] = {
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "kai_frontdoor_root": str(tmp / "root"),
        "kai_frontdoor_manage_service": False,
        "kai_frontdoor_packages": [],
        "kai_frontdoor_haproxy_binary": HAPROXY,
        **overrides,
    }
    (tmp / "inventory.json").write_text(json.dumps(inventory))
    (tmp / "vars.json").write_text(json.dumps(variables))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TMP": str(tmp / "ansible-remote"),
    }
    assert PLAYBOOK is not None
    argv = [PLAYBOOK, "-i", str(tmp / "inventory.json"), "-e", f"@{tmp / 'vars.json'}"]
    result = subprocess.run(
        [*argv, "--limit", "kai_frontdoor", "site.yml"],
        cwd=ANSIBLE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return Run(result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    tmp = tmp_path_factory.mktemp("frontdoor")
    first = play(tmp, HOSTS)
    assert first.rc == 0, first.output[-4000:]
    second = play(tmp, HOSTS)
    return tmp / "root/etc/haproxy/haproxy.cfg", first, second


def test_the_rendered_configuration_passes_haproxy_check(
    rendered: tuple[Path, Run, Run],
) -> None:
    config, first, second = rendered
    assert first.changed() > 0
    assert second.rc == 0 and second.changed() == 0, second.output[-3000:]
    assert HAPROXY is not None
    check = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "Configuration file is valid" in check.stdout + check.stderr


def test_the_configuration_says_what_the_front_door_does(rendered: tuple[Path, Run, Run]) -> None:
    text = rendered[0].read_text()
    assert text.startswith("#\n# Ansible managed")
    servers = re.findall(
        r"^\s+server (\S+) (\S+) weight (\d+) agent-check agent-port (\d+)", text, re.M
    )
    assert servers == [
        ("gpu-01.example.internal", "10.20.0.11:8000", "100", "8001"),
        ("gpu-02.example.internal", "10.20.0.12:8000", "50", "8001"),
        ("gpu-03.example.internal", "10.20.0.13:8000", "100", "8001"),
    ]
    assert "http-check send meth GET uri /health/ready" in text
    assert "http-check expect status 200" in text
    assert re.search(r"^\s+retry-on conn-failure empty-response 503$", text, re.M)
    assert re.search(r"^\s+option redispatch", text, re.M)
    assert re.search(r"^\s+timeout server 10m$", text, re.M)
    assert re.search(r"^\s+timeout client 10m$", text, re.M)
    stats = text[text.index("frontend stats") :]
    assert re.search(r"^\s+bind 127\.0\.0\.1:8404$", stats, re.M)


def test_no_appliance_hosts_is_refused_before_anything_changes(tmp_path: Path) -> None:
    run = play(tmp_path, {}, kai_frontdoor_backends_group="kai_appliance")
    assert run.rc != 0
    assert "has no hosts" in run.output
    assert not (tmp_path / "root").exists()


def test_a_stats_page_beyond_loopback_is_refused(tmp_path: Path) -> None:
    run = play(tmp_path, HOSTS, kai_frontdoor_stats_address="0.0.0.0")
    assert run.rc != 0
    assert "stays on loopback" in run.output
