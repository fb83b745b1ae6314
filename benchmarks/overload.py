"""Overload: the appliance on the simulator at 1x to 4x its capacity, admission control on and off.

Starts `appliance serve` on the shipped `sim` profile (three simulated engines; Kai and Wellness on
the 70B, the Guardrail on the 8B, Genetic on the 32B; each agent with its fallback model), time-
scaled, once per load level and mode. Then it sends conversation turns as a Poisson stream: each
turn checks the user's message with the Guardrail, asks Kai, checks Kai's answer; now and then a
turn also runs a Genetic or a Wellness analysis. Answers have the lengths the service guide's P95
table implies (a short verdict, about a hundred tokens for Kai), sent with `ignore_eos`.

The guide's timeouts (LLM_TIMEOUT, LLM_RETRY_DELAY, the breaker's timeout) and the admission's
queue timeout are scaled like the engines, so everything runs as on the modelled hardware, only
faster. Capacity is computed from the simulator's latency model: the turns per second the busiest engine
finishes with every sequence slot full, agents on their primary models. For each run it prints:

- goodput: answered requests that met their agent's P95 objective (the guide's upper figure), per
  second of modelled time;
- the Guardrail's and Kai's P95 (modelled seconds, answered requests);
- shed (503 + Retry-After) per class, rerouted (answered by a fallback model), other failures
  (timeouts after 60 modelled seconds, engine errors).

All times are divided by the time scale, so they read as the modelled hardware's seconds. The text
sent is synthetic; nothing is stored. Usage:

    python benchmarks/overload.py [--levels 1,2,3,4] [--time-scale 0.25] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from appliance.agents.prompts import system_prompt
from appliance.bench.stats import percentile
from appliance.bench.workloads import MIX_ANALYSIS_P, Workload
from appliance.config import load_config
from appliance.config.schema import Config, EngineConfig
from appliance.simulator import latency

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loopback import free_port, shipped_config

ROOT = Path(__file__).resolve().parents[1]
# Answer lengths in tokens (uniform ranges) that fit the guide's table at its tokens/s.
TOKENS = {"guardrail": (12, 24), "kai": (60, 110), "genetic": (80, 130), "wellness": (60, 110)}
CLIENT_TIMEOUT_S = 60.0  # modelled seconds; twice the guide's LLM_TIMEOUT
CLASS_OF = {"guardrail": "guardrail", "kai": "kai", "genetic": "analysis", "wellness": "analysis"}


@dataclass(frozen=True, slots=True)
class Outcome:
    agent: str
    status: int  # 0: no answer within the client's timeout
    seconds: float  # wall
    fallback: bool
    error_type: str | None


@dataclass(frozen=True, slots=True)
class Run:
    level: float
    admission: bool
    offered: int
    duration_s: float  # modelled
    outcomes: list[Outcome]


# -- the appliance under test --------------------------------------------------------------------


def write_config(
    directory: Path, *, profile: str, time_scale: float, admission: bool
) -> tuple[Path, int]:
    """The shipped file with free ports, the time scale, admission on/off, no scheduled benches;
    a GPU profile is added as `PROFILE-sim`: the same engines and agents on simulated engines."""
    text, port = shipped_config(directory)
    if profile != "sim":
        text += simulated_profile(load_config(ROOT / "models.toml", profile="sim", env={}), profile)
    text = re.sub(
        r"(\[admission\]\n(?:#.*\n)*)enabled = true", rf"\1enabled = {str(admission).lower()}", text
    )
    text = re.sub(r"(\[bench\]\n(?:#.*\n)*)enabled = true", r"\1enabled = false", text)
    text = text.replace('kind = "sim"', f'kind = "sim"\nsim.time_scale = {time_scale}')
    shipped = load_config(ROOT / "models.toml", profile="sim", env={})
    # The guide's timeouts pass as fast as the modelled time does.
    scaled = {
        "timeout": shipped.llm.timeout,
        "retry_delay": shipped.llm.retry_delay,
        "circuit_breaker_timeout": shipped.llm.circuit_breaker_timeout,
        "queue_timeout_s": shipped.admission.queue_timeout_s,
    }
    for key, value in scaled.items():
        text = re.sub(
            rf"^{key} = .*$", f"{key} = {value * time_scale!r}", text, count=1, flags=re.M
        )
    path = directory / "models.toml"
    path.write_text(text)
    config = load_config(path, profile=profile_name(profile), env={})
    checks = (
        config.admission.enabled is admission,
        config.bench.enabled is False,
        config.server.port == port,
        all(e.sim.time_scale == time_scale for e in config.engines if e.kind == "sim"),
        config.llm.timeout == scaled["timeout"] * time_scale,
        config.admission.queue_timeout_s == scaled["queue_timeout_s"] * time_scale,
    )
    if not all(checks):
        raise SystemExit("models.toml changed shape: the benchmark could not set its options")
    return path, port


def profile_name(profile: str) -> str:
    return profile if profile == "sim" else f"{profile}-sim"


def simulated_profile(config: Config, name: str) -> str:
    """TOML for a shipped GPU profile's engines and agents as simulated engines."""
    if name not in config.profiles:
        raise SystemExit(f"no profile {name!r} in models.toml")
    profile = config.profiles[name]
    table = f"profiles.{profile_name(name)}"
    lines = [
        "",
        f"[{table}]",
        f'description = "{name}, on simulated engines (benchmarks/overload.py)"',
        'gpus = "none"',
        f'default_model = "{profile.default_model}"',
    ]
    for agent, models in profile.agents.items():
        fallbacks = ", ".join(f'"{m}"' for m in models.fallbacks)
        lines.append(f'agents.{agent} = {{ model = "{models.model}", fallbacks = [{fallbacks}] }}')
    for engine in profile.engines:
        lines += [
            "",
            f"[[{table}.engines]]",
            f'id = "{engine.id}"',
            'kind = "sim"',
            f'model = "{engine.name}"',
            f"port = {free_port()}",
            f"max_model_len = {engine.max_model_len}",
            f"max_num_seqs = {engine.max_num_seqs}",
        ]
    return "\n".join(lines) + "\n"


class Appliance:
    def __init__(
        self, config: Path, port: int, log: Path, profile: str, env: dict[str, str] | None = None
    ) -> None:
        """`env`: settings for this run (`LLM_*` ones from the caller's environment never pass)."""
        self.base_url = f"http://127.0.0.1:{port}"
        inherited = os.environ.items()
        env = {k: v for k, v in inherited if not k.startswith(("LLM_", "APPLIANCE_"))} | (env or {})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--config", str(config),
             "--profile", profile, "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
        )  # fmt: skip
        self.log = log

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Ready and healthy: every engine up."""

        def ready() -> bool:
            body = httpx2.get(f"{self.base_url}/health/detailed", timeout=2).json()
            return bool(body.get("ready") and body.get("status") == "healthy")

        self._wait(ready, "become ready", timeout)

    def wait_live(self, timeout: float = 60.0) -> None:
        """Listening: with every model down the appliance is live, never healthy."""

        def live() -> bool:
            return httpx2.get(f"{self.base_url}/health/live", timeout=2).status_code == 200

        self._wait(live, "start listening", timeout)

    def _wait(self, done: Callable[[], bool], what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the appliance exited:\n{self.log.read_text()[-2000:]}")
            try:
                if done():
                    return
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"the appliance did not {what}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- capacity, from the simulator's latency model ---------------------------------------------------


def turn_mix() -> dict[str, float]:
    """Requests per conversation turn, per agent."""
    return {"guardrail": 2.0, "kai": 1.0, **MIX_ANALYSIS_P}


def service_s(config: Config, agent: str, engine: EngineConfig, workload: Workload) -> float:
    """Modelled seconds one of the agent's requests holds a slot when every slot is busy."""
    entry = config.catalog.get(engine.model)
    size = (entry.size_class if entry else None) or latency.size_class_of(engine.model) or "8B"
    profile = latency.profile_for(size, batch_slowdown=engine.sim.batch_slowdown)
    samples = [workload.request(agent, i) for i in range(50)]
    prompt = sum(
        latency.prompt_tokens([len(system_prompt(agent)), *(len(m["content"]) for m in r.messages)])
        for r in samples
    ) / len(samples)
    tokens = sum(TOKENS[agent]) / 2
    step = latency.decode_step_s(profile, engine.max_num_seqs)
    return latency.prefill_s(profile, round(prompt)) + (tokens - 1) * step


def capacity_turns_per_s(config: Config, workload: Workload) -> tuple[float, str]:
    """Turns per modelled second the busiest engine finishes, and which engine that is."""
    demand: Counter[str] = Counter()
    for agent, per_turn in turn_mix().items():
        engine = config.engine_for(config.agents[agent].model)
        assert engine is not None
        demand[engine.id] += per_turn * service_s(config, agent, engine, workload)
    engines = {e.id: e for e in config.engines}
    return min((engines[e].max_num_seqs / slot_s, e) for e, slot_s in demand.items())


# -- load ------------------------------------------------------------------------------------------


def schedule(rate_turns: float, duration_s: float, seed: int) -> list[tuple[float, str]]:
    """(modelled send time, agent) for Poisson-arriving turns."""
    rng = random.Random(seed)
    at, plan = rng.expovariate(rate_turns), []
    while at < duration_s:
        plan += [(at, "guardrail"), (at, "kai"), (at, "guardrail")]
        for agent, p in MIX_ANALYSIS_P.items():
            if rng.random() < p:
                plan.append((at, agent))
        at += rng.expovariate(rate_turns)
    return plan


async def drive(
    base_url: str, plan: list[tuple[float, str]], workload: Workload, time_scale: float, seed: int
) -> list[Outcome]:
    rng = random.Random(seed)
    bodies = []
    for i, (_, agent) in enumerate(plan):
        request = workload.request(agent, i)
        bodies.append(
            {
                "model": agent,
                "messages": list(request.messages),
                "max_tokens": rng.randint(*TOKENS[agent]),
                "ignore_eos": True,
            }
        )
    loop = asyncio.get_running_loop()
    limits = httpx2.Limits(max_connections=4000, max_keepalive_connections=4000)
    timeout = httpx2.Timeout(CLIENT_TIMEOUT_S * time_scale, connect=10.0)
    async with httpx2.AsyncClient(timeout=timeout, limits=limits, trust_env=False) as client:
        start = loop.time()

        async def one(at: float, agent: str, body: dict) -> Outcome:
            await asyncio.sleep(max(0.0, start + at * time_scale - loop.time()))
            sent = loop.time()
            try:
                response = await client.post(f"{base_url}/v1/chat/completions", json=body)
            except httpx2.TimeoutException:
                return Outcome(agent, 0, loop.time() - sent, False, "client_timeout")
            except httpx2.TransportError as exc:
                return Outcome(agent, 0, loop.time() - sent, False, type(exc).__name__)
            error = None
            if response.status_code != 200:
                try:
                    error = response.json()["error"]["type"]
                except (ValueError, KeyError, TypeError):
                    error = f"http_{response.status_code}"
            fallback = response.headers.get("x-appliance-fallback") == "true"
            return Outcome(agent, response.status_code, loop.time() - sent, fallback, error)

        return await asyncio.gather(
            *(one(at, agent, body) for (at, agent), body in zip(plan, bodies, strict=True))
        )


def run_once(
    level: float, admission: bool, capacity: float, args: argparse.Namespace, workload: Workload
) -> Run:
    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        directory = Path(tmp)
        config, port = write_config(
            directory, profile=args.profile, time_scale=args.time_scale, admission=admission
        )
        appliance = Appliance(config, port, directory / "appliance.log", profile_name(args.profile))
        try:
            appliance.wait_ready()
            plan = schedule(level * capacity, args.duration, args.seed)
            outcomes = asyncio.run(
                drive(appliance.base_url, plan, workload, args.time_scale, args.seed)
            )
        finally:
            appliance.stop()
    return Run(level, admission, len(plan), args.duration, outcomes)


# -- figures ---------------------------------------------------------------------------------------


def objectives(config: Config) -> dict[str, float]:
    return {agent: settings.expected.p95_s[1] for agent, settings in config.agents.items()}


def summarize(run: Run, objective: dict[str, float], time_scale: float) -> dict[str, Any]:
    answered = [o for o in run.outcomes if o.status == 200]
    met = [o for o in answered if o.seconds / time_scale <= objective[o.agent]]

    def p95(agent: str) -> float | None:
        values = [o.seconds / time_scale for o in answered if o.agent == agent]
        return percentile(values, 95) if values else None

    shed = Counter(CLASS_OF[o.agent] for o in run.outcomes if o.error_type == "overloaded_error")
    failed = sum(1 for o in run.outcomes if o.status != 200 and o.error_type != "overloaded_error")
    return {
        "offered": run.offered / run.duration_s,
        "goodput": len(met) / run.duration_s,
        "goodput_work": sum(1 for o in met if o.agent != "guardrail") / run.duration_s,
        "guardrail_p95": p95("guardrail"),
        "kai_p95": p95("kai"),
        "shed": (shed["guardrail"], shed["kai"], shed["analysis"]),
        "rerouted": sum(1 for o in answered if o.fallback),
        "failed": failed,
    }


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def ratio(on: float, off: float) -> str:
    return f"{on / off:.1f}x" if off else ("-" if not on else "inf")


def print_table(
    runs: list[Run], config: Config, args: argparse.Namespace, capacity: float, busiest: str
) -> None:
    objective = objectives(config)
    print(
        f"Overload on the `{profile_name(args.profile)}` profile, time scale {args.time_scale}, "
        f"{args.duration:g} modelled s per run, {os.cpu_count()} cores. Capacity "
        f"{capacity:.2f} turns/s ({capacity * sum(turn_mix().values()):.1f} requests/s; busiest "
        f"engine: {busiest}). Objectives (P95): "
        + ", ".join(f"{a} {s:g} s" for a, s in objective.items())
        + '. Goodput in requests/s; "Kai+analyses" leaves the guardrail\'s checks out.'
    )
    print()
    print(
        "| load | admission | offered | goodput | on/off | goodput Kai+analyses | on/off | "
        "guardrail P95 s | Kai P95 s | shed g/k/a | rerouted | failed |"
    )
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summaries = {(r.level, r.admission): summarize(r, objective, args.time_scale) for r in runs}
    for run in runs:
        s = summaries[(run.level, run.admission)]
        off = summaries.get((run.level, False)) if run.admission else None
        all_ratio = ratio(s["goodput"], off["goodput"]) if off else "-"
        work_ratio = ratio(s["goodput_work"], off["goodput_work"]) if off else "-"
        g, k, a = s["shed"]
        print(
            f"| {run.level:g}x | {'on' if run.admission else 'off'} | {s['offered']:.1f} | "
            f"{s['goodput']:.2f} | {all_ratio} | {s['goodput_work']:.2f} | {work_ratio} | "
            f"{seconds(s['guardrail_p95'])} | {seconds(s['kai_p95'])} | {g}/{k}/{a} | "
            f"{s['rerouted']} | {s['failed']} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--levels", default="1,2,3,4", help="multiples of capacity (default 1,2,3,4)"
    )
    parser.add_argument("--modes", default="on,off", help="admission on, off or both (default)")
    parser.add_argument("--time-scale", type=float, default=0.25, help="simulator time scale")
    parser.add_argument("--duration", type=float, default=60.0, help="modelled seconds of load")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        default="sim",
        help="sim (default), or a GPU profile of models.toml (budget, balanced, performance) "
        "run on simulated engines of the same shape",
    )
    args = parser.parse_args()
    levels = [float(x) for x in args.levels.split(",")]
    modes = [m.strip() == "on" for m in args.modes.split(",")]

    with tempfile.TemporaryDirectory(prefix="overload-") as tmp:
        path, _ = write_config(Path(tmp), profile=args.profile, time_scale=1.0, admission=True)
        config = load_config(path, profile=profile_name(args.profile), env={})
    workload = Workload(seed=args.seed)
    capacity, busiest = capacity_turns_per_s(config, workload)
    runs = []
    for level in levels:
        for admission in modes:
            started = time.monotonic()
            runs.append(run_once(level, admission, capacity, args, workload))
            print(
                f"  {level:g}x admission {'on' if admission else 'off'}: "
                f"{time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
    print_table(runs, config, args, capacity, busiest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
