"""Schemathesis over the appliance's own OpenAPI document, against a real appliance on simulator
engines: a fixed-seed run of a few hundred cases with no server error and no response that
differs from what the document declares. (`benchmarks/schema_fuzz.py` runs the same for minutes.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fuzz import load, run
from tests.support.running import Appliance, sim_config

pytestmark = pytest.mark.integration

KEY = "fuzz-key"
QUIET = {
    'nightly_cron = "0 3 * * *"': 'nightly_cron = "0 3 29 2 *"',
    'probe_cron = "*/15 * * * *"': 'probe_cron = "0 3 29 2 *"',
}


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    directory: Path = tmp_path_factory.mktemp("fuzz")
    config, port = sim_config(directory, benchmarks=True, replace=QUIET)
    with Appliance(config, port, env={"APPLIANCE_API_KEYS": KEY}) as running:
        yield running


def test_the_document_declares_every_route(appliance: Appliance) -> None:
    paths = appliance.get("/schema/openapi.json").json()["paths"]
    assert "/v1/chat/completions" in paths
    report = paths["/benchmarks/{run_id}/report"]["get"]["responses"]["200"]["content"]
    assert report["application/json"]["schema"] == {"type": "object"}
    converse = paths["/v1/converse"]["post"]["responses"]
    assert converse["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/OpenAIError"
    }


def test_a_fixed_seed_run_finds_no_server_error_and_no_schema_violation(
    appliance: Appliance,
) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    schema = load(appliance.base_url, headers)
    outcome = run(schema, appliance.base_url, headers, examples_per_operation=25, run_seed=20261202)
    assert outcome.cases >= 300, outcome
    assert outcome.server_errors == 0, "\n".join(outcome.failures[:20])
    assert outcome.violations == 0, "\n".join(outcome.failures[:20])
    assert outcome.failures == []
