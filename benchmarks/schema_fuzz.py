"""Schemathesis over the appliance's own OpenAPI document for a given time, and the figures.

Starts the appliance on simulator engines (loopback, an API key), then passes over every
operation again and again with a new seed each pass, valid and invalid cases, until the time is
up. Prints the cases sent, server errors, schema violations and the answers by status; exits 1
when anything was found.

    python -m benchmarks.schema_fuzz --duration 300
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.support.fuzz import Outcome, load, run
from tests.support.running import Appliance, sim_config

KEY = "schema-fuzz-key"
QUIET = {
    'nightly_cron = "0 3 * * *"': 'nightly_cron = "0 3 29 2 *"',
    'probe_cron = "*/15 * * * *"': 'probe_cron = "0 3 29 2 *"',
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--examples", type=int, default=25, help="cases per operation and pass")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first pass")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="schema-fuzz-") as tmp:
        config, port = sim_config(Path(tmp), benchmarks=True, replace=QUIET)
        with Appliance(config, port, env={"APPLIANCE_API_KEYS": KEY}) as appliance:
            headers = {"authorization": f"Bearer {KEY}"}
            schema = load(appliance.base_url, headers)
            operations = sum(1 for _ in schema.get_all_operations())
            started = time.monotonic()
            deadline = started + args.duration
            total, passes = Outcome(), 0
            while time.monotonic() < deadline:
                outcome = run(
                    schema,
                    appliance.base_url,
                    headers,
                    examples_per_operation=args.examples,
                    run_seed=args.seed + passes,
                    deadline=deadline,
                )
                total.add(outcome)
                passes += 1
                print(
                    f"pass {passes}: {outcome.cases} cases, {outcome.server_errors} server "
                    f"errors, {outcome.shed} shed, {outcome.violations} schema violations",
                    file=sys.stderr,
                    flush=True,
                )
            elapsed = time.monotonic() - started
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(total.statuses.items()))
    print(f"operations:         {operations}")
    print(f"duration:           {elapsed:.0f} s ({passes} passes, seeds {args.seed}..)")
    print(f"cases:              {total.cases}")
    print(f"server errors:      {total.server_errors}")
    print(f"shed (503 + Retry-After, designed backpressure): {total.shed}")
    print(f"schema violations:  {total.violations}")
    print(f"answers by status:  {statuses}")
    for failure in total.failures[:20]:
        print(f"  {failure}")
    return 1 if total.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
