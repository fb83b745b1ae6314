"""docs/capacity-planning.md shows what the planner prints for each shipped profile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from appliance.placement import plan_profile
from appliance.placement.render import render_plan

DOC = Path(__file__).resolve().parents[3] / "docs" / "capacity-planning.md"


def blocks() -> dict[str, list[str]]:
    """Each `### name: ...` section's first code block, as lines."""
    text = DOC.read_text()
    found: dict[str, list[str]] = {}
    for match in re.finditer(r"^### (\w+):.*?\n```\n(.*?)```", text, re.S | re.M):
        found[match[1]] = [line for line in match[2].splitlines() if line.strip()]
    return found


def test_the_document_has_a_table_for_each_shipped_profile():
    assert set(blocks()) == {"budget", "balanced", "performance"}


@pytest.mark.parametrize("name", ["budget", "balanced", "performance"])
def test_each_table_is_what_appliance_plan_prints(raw, name):
    profile = raw.profiles[name]
    plan = plan_profile(name, profile.engines, raw.catalog, gpus="2xA100-40GB")
    printed = render_plan(plan).splitlines()
    for line in blocks()[name]:
        assert any(out.startswith(line) for out in printed), line
