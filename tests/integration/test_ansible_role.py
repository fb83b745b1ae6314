"""The Ansible role, applied for real to this machine into a temporary root.

The appliance is installed from a wheel built from this checkout; its dependencies come from the
package index pip is configured with. systemd is left alone (`kai_appliance_manage_service:
false`): the installed unit is checked with `systemd-analyze verify` instead.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_systemd_unit import (
    SYSTEMD_ANALYZE,
    UNIT,
    exec_path,
    systemd_root,
    tool,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = ROOT / "ansible"
PLAYBOOK = tool("ansible-playbook")
LINT = tool("ansible-lint")
VERSION = "0.1.0"
RECAP = re.compile(
    r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)

pytestmark = pytest.mark.skipif(
    PLAYBOOK is None, reason="ansible-core is not installed (.ci/setup-ops.sh installs it)"
)


@dataclass
class Run:
    rc: int
    output: str

    @property
    def changed(self) -> int:
        return int(self.recap()[1])

    @property
    def failed(self) -> int:
        return int(self.recap()[3])

    def recap(self) -> tuple[str, ...]:
        match = RECAP.search(self.output)
        assert match, self.output[-3000:]
        return match.groups()


@dataclass
class Install:
    tmp: Path
    root: Path
    wheels: Path
    first: Run
    second: Run

    def play(self, **overrides: object) -> Run:
        return play(self.tmp, self.root, self.wheels, **overrides)


def ansible_env(tmp: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-local"),
        "ANSIBLE_REMOTE_TMP": str(tmp / "ansible-remote"),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("ANSIBLE_FORCE_COLOR", None)
    return env


def build_wheel(tmp: Path, out: Path, version: str) -> Path:
    """A wheel of this checkout at `version`, built from a copy so the checkout stays clean."""
    src = tmp / f"src-{version}"
    shutil.copytree(
        ROOT / "appliance", src / "appliance", ignore=shutil.ignore_patterns("__pycache__")
    )
    pyproject = (ROOT / "pyproject.toml").read_text()
    (src / "pyproject.toml").write_text(
        re.sub(r'^version = ".*"$', f'version = "{version}"', pyproject, count=1, flags=re.M)
    )
    shutil.copy(ROOT / "README.md", src / "README.md")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob(f"kai_llm_appliance-{version}-*.whl")
    return wheel


def play(tmp: Path, root: Path, wheels: Path, **overrides: object) -> Run:
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()
    variables: dict[str, object] = {
        "kai_appliance_hosts": "localhost",
        "ansible_connection": "local",
        "ansible_become": False,
        "ansible_python_interpreter": sys.executable,
        "kai_appliance_root": str(root),
        "kai_appliance_manage_user": False,
        "kai_appliance_manage_service": False,
        "kai_appliance_user": user,
        "kai_appliance_group": group,
        "kai_appliance_admin_user": user,
        "kai_appliance_admin_group": group,
        "kai_appliance_os_packages": [],
        "kai_appliance_python": sys.executable,
        "kai_appliance_wheels": [f"{wheels}/"],
        "kai_appliance_version": VERSION,
        "kai_appliance_api_keys": ["test-key-1", "test-key-2"],
        "kai_appliance_environment": {"LLM_TIMEOUT": "45", "ODD": 'quote " dollar $HOME'},
        **overrides,
    }
    extra = tmp / "vars.json"
    extra.write_text(json.dumps(variables))
    assert PLAYBOOK is not None
    result = subprocess.run(
        [PLAYBOOK, "-i", "localhost,", "-e", f"@{extra}", "site.yml"],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp),
        capture_output=True,
        text=True,
        timeout=600,
    )
    return Run(result.returncode, result.stdout + result.stderr)


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    tmp = tmp_path_factory.mktemp("role")
    wheels = tmp / "wheels"
    build_wheel(tmp, wheels, VERSION)
    root = tmp / "root"
    first = play(tmp, root, wheels)
    assert first.rc == 0, first.output[-5000:]
    second = play(tmp, root, wheels)
    yield Install(tmp, root, wheels, first, second)


def test_lint_passes_the_production_profile(tmp_path: Path) -> None:
    if LINT is None:
        pytest.skip("ansible-lint is not installed (.ci/setup-ops.sh installs it)")
    result = subprocess.run(
        [LINT, "--profile", "production", "--offline", "--nocolor"],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def test_syntax_check(tmp_path: Path) -> None:
    assert PLAYBOOK is not None
    result = subprocess.run(
        [PLAYBOOK, "--syntax-check", "-i", "inventory/example.yml", "site.yml"],
        cwd=ANSIBLE_DIR,
        env=ansible_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_first_run_installs_the_appliance_and_its_configuration(install: Install) -> None:
    assert install.first.changed > 0
    prefix = install.root / "opt/kai-appliance"
    current = prefix / "current"
    assert os.readlink(current) == f"venvs/{VERSION}"
    version = subprocess.run(
        [str(current / "bin/appliance"), "--version"], capture_output=True, text=True, check=True
    )
    assert VERSION in version.stdout
    assert (prefix / f"wheelhouse/kai_llm_appliance-{VERSION}-py3-none-any.whl").is_file()

    config = install.root / "etc/kai-appliance"
    for name in ("models.toml", "appliance.env"):
        assert (config / name).stat().st_mode & 0o777 == 0o640, name
    models = (config / "models.toml").read_text()
    assert models.startswith("#\n# Ansible managed")
    assert "[profiles.sim]" in models
    validated = subprocess.run(
        [
            str(current / "bin/appliance"),
            "config",
            "validate",
            "--config",
            str(config / "models.toml"),
        ],
        capture_output=True,
        text=True,
    )
    assert validated.returncode == 0, validated.stderr
    env = (config / "appliance.env").read_text()
    assert 'APPLIANCE_PROFILE="sim"' in env
    assert 'APPLIANCE_API_KEYS="test-key-1,test-key-2"' in env
    assert 'ODD="quote \\" dollar \\$HOME"' in env
    for directory in ("var/lib", "var/cache", "var/log"):
        path = install.root / directory / "kai-appliance"
        assert path.stat().st_mode & 0o777 == 0o750, directory


def test_secrets_stay_out_of_the_output(install: Install) -> None:
    assert "test-key-1" not in install.first.output
    assert "test-key-1" not in install.second.output


def test_second_run_changes_nothing(install: Install) -> None:
    assert install.second.rc == 0, install.second.output[-5000:]
    assert install.second.changed == 0, install.second.output[-5000:]


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_installed_unit_verifies(install: Install, tmp_path: Path) -> None:
    unit = install.root / "etc/systemd/system/kai-appliance.service"
    text = unit.read_text()
    assert text.startswith("#\n# Ansible managed")
    # ExecStart names the real path; in this root it leads to the installed environment.
    assert exec_path(text) == "/opt/kai-appliance/current/bin/appliance"
    assert (install.root / exec_path(text).lstrip("/")).is_file()
    systemd_root(install.root)
    result = verify(install.root)
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_installed_unit_matches_the_shipped_unit(install: Install) -> None:
    """The role renders the same unit as systemd/kai-appliance.service, but for the user."""
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    group = subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip()

    def settings(text: str) -> list[str]:
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    shipped = [
        {"User=kai-appliance": f"User={user}", "Group=kai-appliance": f"Group={group}"}.get(x, x)
        for x in settings(UNIT.read_text())
    ]
    installed = install.root / "etc/systemd/system/kai-appliance.service"
    assert settings(installed.read_text()) == shipped


def test_a_gpu_profile_without_a_driver_fails_fast(install: Install) -> None:
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver")
    run = install.play(kai_appliance_profile="balanced")
    assert run.rc != 0
    assert run.changed == 0
    assert (
        "Profile balanced runs vLLM engines on NVIDIA GPUs, but nvidia-smi did not run"
        in run.output
    )
    assert "Traceback" not in run.output


def test_an_unknown_profile_is_refused_before_it_is_used(install: Install) -> None:
    run = install.play(kai_appliance_profile="nope", kai_appliance_gpu=False)
    assert run.rc != 0
    assert "got 'nope'" in run.output
    env = (install.root / "etc/kai-appliance/appliance.env").read_text()
    assert 'APPLIANCE_PROFILE="sim"' in env


def test_upgrade_keeps_the_previous_environment_and_prunes_older_ones(install: Install) -> None:
    venvs = install.root / "opt/kai-appliance/venvs"
    (venvs / "0.0.9" / "bin").mkdir(parents=True)  # an environment two upgrades old
    build_wheel(install.tmp, install.wheels, "0.1.1")
    current = install.root / "opt/kai-appliance/current"

    # A configuration the new version refuses: the service stays on the old environment.
    refused = install.play(
        kai_appliance_version="0.1.1", kai_appliance_profile="nope", kai_appliance_gpu=False
    )
    assert refused.rc != 0
    assert "got 'nope'" in refused.output
    assert os.readlink(current) == f"venvs/{VERSION}"

    run = install.play(kai_appliance_version="0.1.1")
    assert run.rc == 0, run.output[-5000:]
    assert os.readlink(current) == "venvs/0.1.1"
    assert sorted(p.name for p in venvs.iterdir()) == ["0.1.0", "0.1.1"]
    version = subprocess.run(
        [str(venvs / "0.1.1/bin/python"), "-m", "pip", "show", "kai-llm-appliance"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Version: 0.1.1" in version.stdout
