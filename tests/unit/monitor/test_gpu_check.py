"""benchmarks/gpu_check.py with a fake NVML and a fake nvidia-smi (no GPU in CI)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from appliance.monitor.gpu import GpuMonitor
from appliance.monitor.nvml import MigInstance
from tests.unit.monitor.fake_nvml import GIB, FakeDevice, FakeNvml

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_check.py"
SMI = """#!/bin/sh
if [ "$1" = "-L" ]; then
  echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-aaaa)"
  echo "  MIG 3g.20gb     Device  0: (UUID: MIG-00000001-aaaa)"
  echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-bbbb)"
  exit 0
fi
echo "0, GPU-aaaa, NVIDIA A100-SXM4-40GB, 40960, 0, 40960, [N/A], [N/A], 40, Enabled"
echo "1, GPU-bbbb, NVIDIA A100-SXM4-40GB, 40960, 2048, 38912, 12, 3, 41, Disabled"
"""


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nvml_beside_nvidia_smi_with_mig_and_the_planners_view(tmp_path, monkeypatch, capsys):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    mig = MigInstance(
        name="NVIDIA A100-SXM4-40GB MIG 3g.20gb", uuid="MIG-00000001-aaaa",
        memory_total=20 * GIB, memory_used=0, memory_free=20 * GIB,
    )  # fmt: skip
    fake = FakeNvml(devices=[FakeDevice(mig=[mig]), FakeDevice(used=2 * GIB)])
    module = load_script()
    monkeypatch.setattr(module, "GpuMonitor", lambda: GpuMonitor(lambda: fake))
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--samples", "2", "--interval", "0"])
    assert module.main() == 0
    out = capsys.readouterr().out
    assert "sample 2/2" in out
    line = next(row for row in out.splitlines() if row.startswith("1 "))
    assert "40960/40960 (+0)" in line and "2048/2048 (+0)" in line and "12/12 (+0)" in line
    assert "MIG-00000001-aaaa (in nvidia-smi -L: yes)" in out
    planner = out.split("The planner's view of these devices:")[1]
    assert "MIG-00000001-aaaa" in planner and " yes" in planner
    assert (fake.inits, fake.live) == (1, False)


def test_without_a_driver_it_says_so_and_exits_2():
    done = subprocess.run(
        [sys.executable, str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LD_LIBRARY_PATH": "/nonexistent"},
        check=False,
    )
    if done.returncode == 0:  # a host with a real GPU: the table was printed
        assert "The planner's view of these devices:" in done.stdout
        return
    assert done.returncode == 2
    assert done.stderr.startswith("gpu_check: no GPU readings here (unavailable: ")
    assert "Traceback" not in done.stderr
