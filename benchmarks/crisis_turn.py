"""What the crisis classifier adds to a Kai turn, end to end: `/v1/converse` on the real appliance.

`crisis_eval.py` times the classifier's reads alone. In a turn it reads while the Guardrail judges
the message and Kai drafts the reply (`appliance/agents/turn.py`), so it adds only the time it
takes past them, and what its reads on both cores cost everything else. This measures that.

It starts `appliance serve` on the shipped `sim` profile and sends messages spread evenly over the
corpus' dev split (the test split is for `crisis_eval.py` alone) as Kai turns, each with the two
messages before it as the person's earlier turns (as `crisis_eval.py` reads a Kai turn; dev's
turns are longer than test's, so they cost more), every turn twice in a row: first fresh, the
classifier reading it, then again at once, when the detect worker's memory of recent verdicts
answers without a read. The simulator answers the same request the same way (it draws a reply's
length from the request), so what the fresh turns take beyond the remembered ones is the
classifier's share: the difference of their p50s and of their p99s, and the median of the paired
differences. (The tail of the paired differences is not that share: now and then a turn, fresh or
remembered alike, takes a few hundred milliseconds more, so those differences spread both ways.)
Two runs:

- models answering: the engines time-scaled (`--time-scale`, default 0.1: the Guardrail's verdict
  in tens of milliseconds, a whole turn in about a quarter of a second at the median);
- every model unreachable (`LLM_BASE_URL` at a closed port): the Guardrail and Kai fail at once
  (their breakers open after the first turns), and the turn waits on the classifier alone.

Prints p50/p99 of the fresh and the remembered turns and what the fresh add, per run. Turns
the phrase lists call a crisis are answered before any model or the classifier and count too, as
in a real conversation. Nothing is written; the appliance logs no message text. Usage:

    OMP_NUM_THREADS=1 python benchmarks/crisis_turn.py [--turns 450] [--time-scale 0.1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cluster import closed_port
from crisis_data import load
from overload import Appliance, write_config

from appliance.quantiles import percentile

WARM_TURNS = 5  # not counted: the classifier's sessions are built on its first read
REPLY = "Thank you for telling me. What feels most pressing right now?"


def turns(texts: list[str], count: int) -> list[dict[str, object]]:
    """`count` converse bodies, their messages spread evenly over `texts`, each with the two
    messages before it as the person's earlier turns."""
    bodies: list[dict[str, object]] = []
    for i in sorted({2 + k * (len(texts) - 2) // count for k in range(count)}):
        text = texts[i]
        history = []
        for earlier in (texts[i - 2], texts[i - 1]):
            history += [
                {"role": "user", "content": earlier},
                {"role": "assistant", "content": REPLY},
            ]
        bodies.append({"message": text, "history": history, "locale": "en-GB"})
    return bodies


def send(client: httpx2.Client, url: str, body: dict[str, object]) -> float:
    started = time.perf_counter()
    response = client.post(url, json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"/v1/converse answered {response.status_code}: {response.text[:300]}")
    return elapsed


def run(
    name: str, bodies: list[dict[str, object]], time_scale: float, down: bool
) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="crisis-turn-") as tmp:
        config, port = write_config(Path(tmp), profile="sim", time_scale=time_scale, admission=True)
        env = {}
        if down:
            env = {"LLM_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1", "LLM_MODEL": "kai-model"}
        app = Appliance(config, port, Path(tmp) / "appliance.log", "sim", env=env)
        try:
            if down:
                app.wait_live()
            else:
                app.wait_ready()
            url = f"{app.base_url}/v1/converse"
            fresh: list[float] = []
            remembered: list[float] = []
            with httpx2.Client(timeout=60.0, trust_env=False) as client:
                for i, body in enumerate(bodies):
                    first = send(client, url, body)
                    again = send(client, url, body)
                    if i >= WARM_TURNS:
                        fresh.append(first)
                        remembered.append(again)
        finally:
            app.stop()
    print(f"  {name}: {len(fresh)} turns (after {WARM_TURNS} not counted)", flush=True)
    return {"fresh": fresh, "remembered": remembered}


def ms(values: list[float], q: float) -> float:
    return percentile([v * 1000 for v in values], q)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=450, help="how many turns to send")
    parser.add_argument("--time-scale", type=float, default=0.1)
    args = parser.parse_args()
    texts = [example.text for example in load("dev")]
    if not WARM_TURNS < args.turns <= len(texts) - 2:
        parser.error(f"--turns must be above {WARM_TURNS} and within dev's messages")
    bodies = turns(texts, args.turns)
    print(
        f"{len(bodies)} Kai turns from the dev split, each sent fresh and then again:", flush=True
    )
    runs = {
        f"models answering (time scale {args.time_scale})": run(
            "models answering", bodies, args.time_scale, down=False
        ),
        "every model unreachable": run("every model unreachable", bodies, 1.0, down=True),
    }
    print(
        f"\n{'ms':<36}{'fresh p50':>10}{'p99':>9}{'again p50':>10}{'p99':>9}"
        f"{'added p50':>10}{'p99':>9}{'paired median':>14}"
    )
    for name, times in runs.items():
        fresh, again = times["fresh"], times["remembered"]
        paired = [a - b for a, b in zip(fresh, again, strict=True)]
        print(
            f"{name:<36}{ms(fresh, 50):10.2f}{ms(fresh, 99):9.2f}{ms(again, 50):10.2f}"
            f"{ms(again, 99):9.2f}{ms(fresh, 50) - ms(again, 50):10.2f}"
            f"{ms(fresh, 99) - ms(again, 99):9.2f}{ms(paired, 50):14.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
