"""The shipped systemd unit: `systemd-analyze verify` passes and the security score holds.

systemd-analyze reads the unit from a throwaway root that holds the host's own system units (for
the targets the unit depends on) and a stand-in `appliance` executable at the path of ExecStart.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "kai-appliance.service"
DOCS = ROOT / "docs" / "security.md"
# "OK" in systemd-analyze's words; the unit scores below it (see docs/security.md).
MAX_EXPOSURE_TENTHS = 20


def tool(name: str) -> str | None:
    """A command from this Python's environment first (a venv's bin), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


SYSTEMD_ANALYZE = tool("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None,
    reason="systemd-analyze is not installed (.ci/setup-ops.sh installs it)",
)


def host_unit_dir() -> Path:
    for candidate in ("/usr/lib/systemd/system", "/lib/systemd/system"):
        if Path(candidate, "multi-user.target").exists():
            return Path(candidate)
    raise FileNotFoundError("no system unit directory on this host")


def systemd_root(root: Path, *, exec_start: str | None = None) -> Path:
    """Make `root` look enough like a system for systemd-analyze: system units and ExecStart."""
    units = root / "usr" / "lib" / "systemd" / "system"
    if not units.exists():
        shutil.copytree(host_unit_dir(), units, symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True, exist_ok=True)
    if exec_start is not None:
        binary = root / exec_start.lstrip("/")
        if not binary.exists():
            binary.parent.mkdir(parents=True, exist_ok=True)
            binary.write_text("#!/bin/sh\nexit 0\n")
            binary.chmod(0o755)
    return root


def exec_path(unit_text: str) -> str:
    line = next(x for x in unit_text.splitlines() if x.startswith("ExecStart="))
    return line.removeprefix("ExecStart=").split()[0]


def verify(root: Path, unit: str = "kai-appliance.service") -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "verify", f"--root={root}", unit],
        capture_output=True,
        text=True,
        timeout=60,
    )


def security(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    return subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A root with the shipped unit in /etc/systemd/system."""
    text = UNIT.read_text()
    root = systemd_root(tmp_path / "root", exec_start=exec_path(text))
    (root / "etc/systemd/system/kai-appliance.service").write_text(text)
    return root


@needs_systemd_analyze
def test_unit_verifies_cleanly(installed: Path) -> None:
    result = verify(installed)
    assert result.returncode == 0, result.stderr
    # Unknown keys and unparsable values are only warnings: any output is a finding.
    assert result.stdout + result.stderr == ""


@needs_systemd_analyze
def test_verify_reports_a_broken_unit(installed: Path) -> None:
    """The check above can fail: a typo and a bad value are reported."""
    unit = installed / "etc/systemd/system/kai-appliance.service"
    unit.write_text(
        unit.read_text().replace("WatchdogSec=30s", "WatchdogSec=soon\nProtectSystm=strict")
    )
    result = verify(installed)
    output = result.stdout + result.stderr
    assert "WatchdogSec" in output or "soon" in output
    assert "ProtectSystm" in output


@needs_systemd_analyze
def test_verify_needs_the_executable(tmp_path: Path) -> None:
    root = systemd_root(tmp_path / "root")
    (root / "etc/systemd/system/kai-appliance.service").write_text(UNIT.read_text())
    result = verify(root)
    assert result.returncode != 0
    assert "appliance" in result.stdout + result.stderr


@needs_systemd_analyze
def test_security_exposure_stays_ok(installed: Path) -> None:
    result = security(installed, f"--threshold={MAX_EXPOSURE_TENTHS}", "kai-appliance.service")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Overall exposure level for kai-appliance.service" in result.stdout


@needs_systemd_analyze
def test_every_remaining_exposure_is_explained(installed: Path) -> None:
    result = security(installed, "--json=short", "kai-appliance.service")
    assert result.returncode == 0, result.stderr
    exposed = [item["name"] for item in json.loads(result.stdout) if item.get("exposure")]
    assert exposed, "systemd-analyze reported no exposure at all: the check is not working"
    docs = DOCS.read_text().replace("\\|", "|")  # a | inside a Markdown table is escaped
    unexplained = [name for name in exposed if f"`{name}`" not in docs]
    assert unexplained == [], f"exposures not explained in docs/security.md: {unexplained}"


def test_unit_keeps_the_contract() -> None:
    """What the appliance and the role rely on, read straight from the file."""
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    one = {key: values[-1] for key, values in settings.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert one["Restart"] == "on-failure"
    assert one["KillMode"] == "mixed"
    assert one["DevicePolicy"] == "closed"
    assert one["User"] == one["Group"] == "kai-appliance"
    assert one["ExecStart"].split()[1:] == [
        "serve",
        "--config",
        "/etc/kai-appliance/models.toml",
    ]
    assert "-/etc/kai-appliance/appliance.env" in settings["EnvironmentFile"]
    allowed = {value.split()[0] for value in settings["DeviceAllow"]}
    assert {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia0", "char-nvidia*"} <= allowed
    assert "MemoryDenyWriteExecute" not in one
