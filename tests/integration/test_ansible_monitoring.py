"""The role's optional monitoring tasks, applied for real into a temporary root: the rules (checked
by promtool on the way), the dashboard and its Grafana provider land where configured; a second
run changes nothing; off by default."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.integration.test_ansible_role import ANSIBLE_DIR, PLAYBOOK, RECAP, ansible_env

MONITORING = ANSIBLE_DIR / "roles" / "kai_appliance" / "files" / "monitoring"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        PLAYBOOK is None, reason="ansible-core is not installed (.ci/setup-ops.sh installs it)"
    ),
]

PLAY = [
    {
        "name": "Monitoring files of the Kai appliance",
        "hosts": "localhost",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Apply the role's monitoring tasks",
                "ansible.builtin.include_role": {
                    "name": "kai_appliance",
                    "tasks_from": "monitoring",
                },
            }
        ],
    }
]


def play(tmp: Path, **variables: object) -> tuple[int, int, str]:
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    settings = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "kai_appliance_root": str(tmp / "root"),
        "kai_appliance_manage_service": False,
        "kai_appliance_admin_user": user,
        "kai_appliance_admin_group": group,
        **variables,
    }
    (tmp / "vars.json").write_text(json.dumps(settings))
    (tmp / "play.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    assert PLAYBOOK is not None
    done = subprocess.run(
        [PLAYBOOK, "-i", "localhost,", "-e", f"@{tmp / 'vars.json'}", str(tmp / "play.yml")],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    recap = RECAP.search(output)
    assert recap, output[-3000:]
    return done.returncode, int(recap.group(2)), output


def test_off_by_default_nothing_is_installed(tmp_path: Path) -> None:
    rc, changed, output = play(tmp_path)
    assert rc == 0, output[-3000:]
    assert changed == 0
    assert not (tmp_path / "root").exists()


def test_the_rules_and_the_dashboard_are_installed_once(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's `prometheus` package"
    wanted = {
        "kai_appliance_prometheus_rules": True,
        "kai_appliance_grafana_dashboard": True,
        "kai_appliance_promtool": promtool,
    }
    rc, changed, output = play(tmp_path, **wanted)
    assert rc == 0, output[-3000:]
    assert changed >= 4
    root = tmp_path / "root"
    rules = root / "etc/prometheus/rules/kai-appliance.rules.yml"
    dashboard = root / "var/lib/grafana/dashboards/kai-appliance/kai-appliance.dashboard.json"
    assert rules.read_text() == (MONITORING / "kai-appliance.rules.yml").read_text()
    assert dashboard.read_text() == (MONITORING / "kai-appliance.dashboard.json").read_text()
    provider = yaml.safe_load(
        (root / "etc/grafana/provisioning/dashboards/kai-appliance.yml").read_text()
    )
    assert provider["providers"][0]["options"]["path"] == (
        "/var/lib/grafana/dashboards/kai-appliance"
    )
    again_rc, again_changed, again = play(tmp_path, **wanted)
    assert again_rc == 0 and again_changed == 0, again[-3000:]
