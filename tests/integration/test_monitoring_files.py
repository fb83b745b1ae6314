"""The shipped Prometheus rules and Grafana dashboard: valid for promtool, every alert fires on the
series it watches, and every metric they name is one a running appliance exposes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.running import ROOT, Appliance, sim_config

pytestmark = pytest.mark.integration

MONITORING = ROOT / "ansible" / "roles" / "kai_appliance" / "files" / "monitoring"
RULES = MONITORING / "kai-appliance.rules.yml"
DASHBOARD = MONITORING / "kai-appliance.dashboard.json"
# Series Prometheus makes itself, not the appliance.
PROMETHEUS_OWN = {"up"}
METRIC = re.compile(r"\b(appliance_[a-zA-Z0-9_:]*|up)\b(?!\s*\()")


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's `prometheus` package (.ci/setup-ops.sh)"
    return found


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["alert"]: rule["expr"] for group in groups for rule in group["rules"]}


def dashboard_exprs() -> list[str]:
    exprs = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            if isinstance(node.get("definition"), str):
                exprs.append(node["definition"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(DASHBOARD.read_text()))
    return exprs


def as_promql(expr: str) -> str:
    """A Grafana expression with its variables filled in, as Prometheus would receive it."""
    return expr.replace("$__rate_interval", "5m").replace("$instance", ".*")


def names_in(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(METRIC.findall(without_strings))


def test_promtool_accepts_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_the_rules_cover_what_an_operator_is_woken_for() -> None:
    assert set(rule_exprs()) == {
        "KaiApplianceNotReady",
        "KaiApplianceDown",
        "KaiApplianceEngineDown",
        "KaiApplianceCircuitBreakerOpen",
        "KaiApplianceAgentSlow",
        "KaiApplianceShedding",
        "KaiApplianceGpuMemoryNearlyFull",
        "KaiApplianceBenchmarkRegression",
    }


UNIT_TESTS = """
rule_files: [{rules}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'appliance_ready{{instance="a"}}'
        values: '1 0x10'
      - series: 'up{{job="kai-appliance",instance="a"}}'
        values: '1 1 0x5'
      - series: 'appliance_engine_up{{instance="a",engine="llama-8b"}}'
        values: '1 1 0x5'
      - series: 'appliance_circuit_breaker_state{{instance="a",engine="llama-8b",state="open"}}'
        values: '0 1x5'
      - series: 'appliance_agent_latency_p95_seconds{{instance="a",agent="kai"}}'
        values: '6 9x15'
      - series: 'appliance_agent_expected_p95_high_seconds{{instance="a",agent="kai"}}'
        values: '8x16'
      - series: 'appliance_agent_latency_p95_seconds{{instance="a",agent="guardrail"}}'
        values: '1.5x16'
      - series: 'appliance_agent_expected_p95_high_seconds{{instance="a",agent="guardrail"}}'
        values: '2x16'
      - series: 'appliance_admitted_total{{instance="a",engine="e",class="analysis"}}'
        values: '0+60x15'
      - series: 'appliance_shed_total{{instance="a",engine="e",class="analysis",reason="saturated"}}'
        values: '0+12x15'
      - series: 'appliance_admitted_total{{instance="a",engine="e",class="interactive"}}'
        values: '0+60x15'
      - series: 'appliance_shed_total{{instance="a",engine="e",class="interactive",reason="x"}}'
        values: '0+1x15'
      - series: 'appliance_gpu_memory_used_bytes{{instance="a",gpu="0",name="A100"}}'
        values: '39e9x15'
      - series: 'appliance_gpu_memory_total_bytes{{instance="a",gpu="0",name="A100"}}'
        values: '40e9x15'
      - series: 'appliance_benchmark_regression{{instance="a",agent="genetic"}}'
        values: '0 1'
    alert_rule_test:
      - eval_time: 3m
        alertname: KaiApplianceNotReady
        exp_alerts: []
      - eval_time: 8m
        alertname: KaiApplianceNotReady
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a}}
      - eval_time: 5m
        alertname: KaiApplianceDown
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a, job: kai-appliance}}
      - eval_time: 5m
        alertname: KaiApplianceEngineDown
        exp_alerts:
          - exp_labels: {{severity: critical, instance: a, engine: llama-8b}}
      - eval_time: 3m
        alertname: KaiApplianceCircuitBreakerOpen
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, engine: llama-8b, state: open}}
      - eval_time: 8m
        alertname: KaiApplianceAgentSlow
        exp_alerts: []
      - eval_time: 12m
        alertname: KaiApplianceAgentSlow
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, agent: kai}}
      - eval_time: 12m
        alertname: KaiApplianceShedding
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, class: analysis}}
      - eval_time: 12m
        alertname: KaiApplianceGpuMemoryNearlyFull
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, gpu: "0", name: A100}}
      - eval_time: 2m
        alertname: KaiApplianceBenchmarkRegression
        exp_alerts:
          - exp_labels: {{severity: info, instance: a, agent: genetic}}
"""


def test_each_alert_fires_on_what_it_watches_and_not_before(tmp_path: Path) -> None:
    # The same rules without their annotations (promtool compares those too; `check` covers them).
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "bare.rules.yml"
    bare.write_text(yaml.safe_dump(rules))
    tests = tmp_path / "rules.test.yml"
    tests.write_text(UNIT_TESTS.format(rules=json.dumps(str(bare))))
    done = subprocess.run(
        [promtool(), "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    exprs = [as_promql(e) for e in dashboard_exprs() if not e.startswith("label_values(")]
    assert len(exprs) >= 20
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"dashboard:q{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def exposed(metrics_text: str) -> set[str]:
    """Every sample name a scrape can hold: the families' names and their histogram suffixes."""
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def test_every_metric_named_is_one_the_appliance_exposes(tmp_path: Path) -> None:
    named = set().union(*(names_in(e) for e in rule_exprs().values()))
    named |= set().union(*(names_in(e) for e in dashboard_exprs()))
    assert len(named) >= 20, named
    config, port = sim_config(tmp_path, benchmarks=True)
    with Appliance(config, port) as appliance:
        scrape = appliance.get("/metrics")
    assert scrape.status_code == 200
    missing = sorted(named - exposed(scrape.text) - PROMETHEUS_OWN)
    assert missing == [], f"named in the rules or the dashboard, not exposed: {missing}"
