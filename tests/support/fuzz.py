"""Schemathesis over the appliance's own OpenAPI document, against a running appliance.

Every operation gets cases generated from its schema, valid (positive) and invalid (negative);
each response is checked: never a server error, the status, content type and body as declared.
Failures are collected rather than raised, so one run reports them all; no shrinking, so a run's
length is the number of cases.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# A 503 with Retry-After and an OpenAI-shaped `overloaded_error` or `engine_unavailable` is the
# appliance's designed backpressure (a loaded machine makes the simulator slow, and admission
# sheds analyses first): counted apart, and checked against the schema like any answer.
BACKPRESSURE = frozenset({"overloaded_error", "engine_unavailable"})
SHED_CHECKS = CHECKS[1:]
# Valid cases that would start benchmark runs of any size against the appliance under test:
# only its invalid cases are sent (the benchmark tests start runs on purpose).
POSITIVE_SKIP = {("POST", "/benchmarks")}


@dataclass
class Outcome:
    cases: int = 0
    server_errors: int = 0
    shed: int = 0
    violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: Outcome) -> None:
        self.cases += other.cases
        self.server_errors += other.server_errors
        self.shed += other.shed
        self.violations += other.violations
        self.statuses.update(other.statuses)
        self.failures.extend(other.failures)


def load(base_url: str, headers: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(
        base_url + "/schema/openapi.json", headers=headers, timeout=30
    )


def run(
    schema: Any,
    base_url: str,
    headers: dict[str, str],
    *,
    examples_per_operation: int,
    run_seed: int,
    deadline: float | None = None,
) -> Outcome:
    """One pass over every operation, in both generation modes."""
    total = Outcome()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            key = (operation.method.upper(), operation.path)
            if mode is GenerationMode.POSITIVE and key in POSITIVE_SKIP:
                continue
            if deadline is not None and time.monotonic() > deadline:
                return total
            total.add(
                _fuzz_operation(
                    operation, mode, base_url, headers, examples_per_operation, run_seed
                )
            )
    return total


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    examples: int,
    run_seed: int,
) -> Outcome:
    outcome = Outcome()
    label = f"{operation.method.upper()} {operation.path} ({mode.value})"

    @seed(run_seed)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def each(case: Any) -> None:
        outcome.cases += 1
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        outcome.statuses[response.status_code] += 1
        shed = _backpressure(response)
        if shed:
            outcome.shed += 1
        elif response.status_code >= 500:
            outcome.server_errors += 1
        try:
            case.validate_response(
                response, checks=SHED_CHECKS if shed else CHECKS, headers=headers
            )
        except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis: a FailureGroup
            if response.status_code < 500:
                outcome.violations += 1
            outcome.failures.append(f"{label}: {_first_line(exc)}")
        except Exception as exc:  # a check's own failure types
            if response.status_code < 500:
                outcome.violations += 1
            outcome.failures.append(f"{label}: {type(exc).__name__}: {_first_line(exc)}")

    # Unsatisfiable: no invalid input exists for this operation (nothing to get wrong).
    with contextlib.suppress(Unsatisfiable):
        each()
    return outcome


def _backpressure(response: Any) -> bool:
    if response.status_code != 503 or not response.headers.get("retry-after"):
        return False
    try:
        kind = response.json()["error"]["type"]
    except (ValueError, KeyError, TypeError):
        return False
    return kind in BACKPRESSURE


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[:6])[:600]
