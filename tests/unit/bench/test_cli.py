"""`appliance bench`: parsing, reading stored runs, the progress bar."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from appliance.bench.cli import ProgressBar, add_bench_parser, run_bench
from appliance.bench.records import Phase
from appliance.bench.runner import Progress
from appliance.cli import main
from appliance.errors import BadRequest
from appliance.store.bench import BenchStore
from tests.support.running import SHIPPED
from tests.unit.bench.test_report import params, result


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *argv])


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "bench.sqlite3"

    async def fill() -> None:
        store = await BenchStore.open(path)
        from appliance.store.bench_rows import RunMeta

        run_id = await store.create_run("run", "manual", params(), RunMeta(profile="sim"))
        await store.add_summaries(run_id, [result("kai", 9.0), result("guardrail", 1.5, phase=1)])
        await store.finish_run(run_id, "completed")
        await store.close()

    asyncio.run(fill())
    return path


def test_run_and_sweep_options_parse() -> None:
    args = parse("run", "--rate", "2.5", "--agents", "kai,guardrail", "--no-mix")
    assert (args.bench_command, args.rate, args.no_mix) == ("run", 2.5, True)
    args = parse("sweep", "--max-concurrency", "8", "--direct", "--time-scale", "0.1")
    assert (args.max_concurrency, args.direct, args.time_scale) == (8, True, 0.1)
    assert args.base_url == "http://127.0.0.1:8000/v1"
    with pytest.raises(SystemExit):
        parse("run", "--rate", "1", "--concurrency", "2")  # one load shape at a time


def test_list_show_and_report_read_the_database(
    db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--config", str(SHIPPED), "--db", str(db)]
    assert main(["bench", "list", *common]) == 0
    assert "| 1 | run | manual | completed |" in capsys.readouterr().out
    assert main(["bench", "show", "1", *common]) == 0
    shown = capsys.readouterr().out
    assert "# Benchmark run #1" in shown and "worse by 1.00 s" in shown
    out = tmp_path / "r.html"
    assert main(["bench", "report", "1", "--format", "html", "--out", str(out), *common]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["bench", "report", "1", "--format", "json", *common]) == 0
    assert '"completed": 5' in capsys.readouterr().out
    assert main(["bench", "show", "9", *common]) == 1
    assert "no run 9" in capsys.readouterr().err


def test_bad_run_options_are_one_line_errors(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "run", "--config", str(SHIPPED), "--db", str(db), "--agents", "bob"])
    assert code == 1
    err = capsys.readouterr().err
    assert "unknown agent" in err and "Traceback" not in err
    with pytest.raises(BadRequest):
        run_bench(parse("run", "--config", str(SHIPPED), "--db", str(db), "--requests", "0"))


def progress(done: int, total: int, failed: int = 0) -> Progress:
    phase = Phase(index=0, scope="kai", mode="concurrency", concurrency=4, num_requests=total)
    return Progress(phase=phase, done=done, total=total, failed=failed)


def test_progress_bar_draws_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = ProgressBar(out, min_interval_s=0.0)
    bar.update(progress(2, 8))
    bar.update(progress(8, 8, failed=1))
    text = out.getvalue()
    assert text.startswith("\r") and "kai     c=4 [#######---------------------] 2/8" in text
    assert "8/8  failed 1" in text and text.endswith("\n")


def test_progress_bar_prints_a_line_per_phase_elsewhere() -> None:
    out = io.StringIO()
    bar = ProgressBar(out)
    for i in range(1, 5):
        bar.update(progress(i, 4))
    assert out.getvalue().count("\n") == 1 and "4/4" in out.getvalue()
