"""The operations page in a real browser (Playwright on Debian's Chromium) against `appliance serve`
on simulated engines with an API key: sign in, read every section, watch it move under load, run a
benchmark and open its report; a wrong key gets nothing; no request leaves the appliance's origin.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
import pytest

from tests.support.browser import ARTIFACTS, chromium
from tests.support.running import Appliance, sim_config

pytestmark = pytest.mark.integration

KEY = "ops-page-key-7f3a9c"
ENGINES = ("llama-70b", "llama-8b", "qwen-32b")
AGENTS = ("kai", "guardrail", "genetic", "wellness")
WAIT_MS = 60_000  # generous: a loaded 2-core machine


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    directory = tmp_path_factory.mktemp("ops-page")
    config, port = sim_config(
        directory,
        benchmarks=True,
        replace={
            # No scheduled run may start inside the test; the page still shows when they would.
            'nightly_cron = "0 3 * * *"': 'nightly_cron = "0 0 1 1 *"',
            'probe_cron = "*/15 * * * *"': 'probe_cron = "0 0 1 1 *"',
            "shutdown_grace_s = 10.0": "shutdown_grace_s = 10.0\nhistory_interval_s = 1.0",
        },
    )
    env = {**os.environ, "APPLIANCE_API_KEYS": KEY}
    with Appliance(config, port, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Recorded:
    """Every request the page makes, and the console errors it logs."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.errors: list[str] = []


@pytest.fixture
def page(browser: Any, appliance: Appliance) -> Iterator[tuple[Any, Recorded]]:
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    recorded = Recorded()
    context.on("request", lambda request: recorded.urls.append(request.url))
    tab = context.new_page()
    tab.on("console", lambda m: m.type == "error" and recorded.errors.append(m.text))
    tab.set_default_timeout(WAIT_MS)
    try:
        yield tab, recorded
    finally:
        context.close()


def sign_in(tab: Any, appliance: Appliance, key: str) -> None:
    tab.goto(appliance.base_url + "/ui")
    tab.get_by_label("API key").fill(key)
    tab.get_by_role("button", name="Sign in").click()


def same_origin(appliance: Appliance, urls: list[str]) -> list[str]:
    """The URLs that went anywhere but the appliance (a report shown in the page is `about:`)."""
    origin = urlsplit(appliance.base_url)
    return [
        url
        for url in urls
        if not url.startswith(("about:", "data:"))
        and (urlsplit(url).scheme, urlsplit(url).netloc) != (origin.scheme, origin.netloc)
    ]


def load(appliance: Appliance, requests: int = 6) -> None:
    """A little traffic on every agent route, and one crisis message."""
    client = openai.OpenAI(base_url=appliance.base_url + "/v1", api_key=KEY, max_retries=0)

    def one(agent: str) -> None:
        client.chat.completions.create(
            model=agent, messages=[{"role": "user", "content": "Work was long today."}]
        )

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(one, [a for a in AGENTS for _ in range(requests)]))
    client.chat.completions.create(
        model="kai", messages=[{"role": "user", "content": "I want to kill myself"}]
    )


def test_the_shell_is_open_and_its_data_needs_the_key(appliance: Appliance) -> None:
    shell = appliance.get("/ui")
    assert shell.status_code == 200 and "Sign in" in shell.text
    assert "default-src 'none'" in shell.headers["content-security-policy"]
    assert appliance.get("/ui/static/app.js").status_code == 200
    assert appliance.get("/ui/static/../services.py").status_code == 404
    assert appliance.get("/ui/session").json() == {"key_required": True}
    bearer = {"Authorization": f"Bearer {KEY}"}
    for path in ("/admin/overview", "/admin/history"):
        assert appliance.get(path, headers={}).status_code == 401
        assert appliance.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert appliance.get(path, headers=bearer).status_code == 200
    crisis = "I want to kill myself, said nobody in this test"
    client = openai.OpenAI(base_url=appliance.base_url + "/v1", api_key=KEY, max_retries=0)
    client.chat.completions.create(model="kai", messages=[{"role": "user", "content": crisis}])
    overview = appliance.get("/admin/overview", headers=bearer)
    assert overview.json()["crisis"]["total"] >= 1
    metrics = appliance.get("/metrics", headers=bearer).text
    assert 'appliance_crisis_replies_total{source="crisis_detector"}' in metrics
    assert "appliance_ready 1.0" in metrics
    assert 'appliance_agent_expected_p95_high_seconds{agent="kai"} 8.0' in metrics
    for body in (overview.text, metrics, appliance.get("/admin/history", headers=bearer).text):
        assert "nobody in this test" not in body


def test_a_wrong_key_shows_only_the_form_and_an_error(
    page: tuple[Any, Recorded], appliance: Appliance
) -> None:
    from playwright.sync_api import expect

    tab, recorded = page
    sign_in(tab, appliance, "not-the-key")
    expect(tab.get_by_role("alert").first).to_contain_text("refused")
    expect(tab.locator("#main")).to_be_hidden()
    assert tab.locator("#engines tbody tr").count() == 0
    assert tab.evaluate("sessionStorage.length") == 0
    assert all("not-the-key" not in url for url in recorded.urls)
    assert same_origin(appliance, recorded.urls) == []


def test_an_operator_sees_every_section_move_and_runs_a_benchmark(
    page: tuple[Any, Recorded], appliance: Appliance
) -> None:
    from playwright.sync_api import expect

    tab, recorded = page
    sign_in(tab, appliance, KEY)
    expect(tab.locator("#main")).to_be_visible()
    expect(tab.locator("#status")).to_have_text("healthy")
    for engine in ENGINES:
        row = tab.locator(f'#engines tr[data-engine="{engine}"]')
        expect(row).to_contain_text("RUNNING")
        expect(row).to_contain_text("closed")
    for agent in AGENTS:
        expect(tab.locator(f'#agents tr[data-agent="{agent}"]')).to_be_visible()
        expect(tab.locator(f'#charts [data-chart="{agent}"] svg')).to_be_visible()
    expect(tab.locator("#gpus")).to_contain_text("No GPU on this host")
    expect(tab.locator("#placement")).to_contain_text("No vLLM engine in this profile")
    expect(tab.locator("#bench-next")).to_contain_text("Next scheduled")

    # Numbers move under load: requests, latency, admission and the crisis count.
    kai = tab.locator('#agents tr[data-agent="kai"]')
    before = kai.locator('[data-field="requests"]').inner_text()
    crisis = tab.locator('[data-field="crisis-total"]')
    crisis_before = crisis.inner_text()
    load(appliance)
    expect(kai.locator('[data-field="requests"]')).not_to_have_text(before)
    expect(kai.locator('[data-field="p95"]')).not_to_have_text("\u2013")  # the dash of "no figure"
    expect(tab.locator('#admission tr:has(th:text-is("guardrail")) td').first).not_to_have_text("0")
    expect(crisis).to_have_text(str(int(crisis_before) + 1))
    expect(tab.locator('#charts [data-chart="kai"] polyline')).to_be_attached()

    # A benchmark: start it from the page, wait for its verdicts, open its report.
    tab.get_by_label("Run").select_option("probe")
    tab.get_by_role("button", name="Start a benchmark").click()
    expect(tab.locator("#bench-msg")).to_contain_text("Started probe run")
    run = tab.locator("#runs tbody tr").first
    expect(run).to_contain_text("completed", timeout=180_000)
    expect(run).to_contain_text("guardrail")
    run.get_by_role("button", name="Open report").click()
    report = tab.frame_locator("#report-frame")
    expect(report.locator("h1")).to_contain_text("Benchmark run #")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ops-page-report.png"))
    tab.get_by_role("button", name="Close").click()
    expect(tab.locator("#report")).to_be_hidden()
    tab.screenshot(path=str(ARTIFACTS / "ops-page.png"), full_page=True)
    assert (ARTIFACTS / "ops-page.png").stat().st_size > 10_000

    # The key stayed out of every address and out of the appliance's log.
    assert recorded.urls and all(KEY not in url for url in recorded.urls)
    assert same_origin(appliance, recorded.urls) == []
    assert KEY not in appliance.log()
    assert recorded.errors == []


def test_signing_in_and_out_by_keyboard_forgets_the_key(
    page: tuple[Any, Recorded], appliance: Appliance
) -> None:
    from playwright.sync_api import expect

    tab, _ = page
    # By keyboard alone: the form has the focus when the page opens.
    tab.goto(appliance.base_url + "/ui")
    expect(tab.get_by_label("API key")).to_be_focused()
    tab.keyboard.type(KEY)
    tab.keyboard.press("Enter")
    expect(tab.locator("#engines tbody tr")).to_have_count(len(ENGINES))
    tab.get_by_role("button", name="Sign out").focus()
    tab.keyboard.press("Enter")
    expect(tab.locator("#login")).to_be_visible()
    expect(tab.locator("#main")).to_be_hidden()
    assert tab.evaluate("sessionStorage.length") == 0


def test_without_keys_the_page_opens_and_shows_a_dead_engine(browser: Any, tmp_path: Path) -> None:
    """No key configured (loopback only): no form. One engine never becomes healthy: the page
    says so, and the agent whose model it serves is answered by its fallback."""
    from playwright.sync_api import expect

    config, port = sim_config(
        tmp_path, engine_settings={"qwen-32b": "startup_timeout_s = 0.5\nsim.slow_start_s = 60"}
    )
    env = {k: v for k, v in os.environ.items() if k != "APPLIANCE_API_KEYS"}
    with Appliance(config, port, env=env) as open_appliance:
        open_appliance.wait_ready(timeout=60)
        client = openai.OpenAI(base_url=open_appliance.base_url + "/v1", api_key="-", max_retries=0)
        for _ in range(3):
            client.chat.completions.create(
                model="genetic", messages=[{"role": "user", "content": "hi"}], max_tokens=4
            )
        context = browser.new_context()
        try:
            tab = context.new_page()
            tab.set_default_timeout(WAIT_MS)
            tab.goto(open_appliance.base_url + "/ui")
            expect(tab.locator("#open-note")).to_contain_text("no API keys configured")
            expect(tab.locator("#login")).to_be_hidden()
            expect(tab.locator("#logout")).to_be_hidden()
            expect(tab.locator("#status")).to_have_text("degraded")
            dead = tab.locator('#engines tr[data-engine="qwen-32b"]')
            expect(dead).to_contain_text("FATAL")
            expect(dead).to_contain_text("healthy")  # its last error: never became healthy
            expect(tab.locator("#c-engines")).to_have_text(f"{len(ENGINES) - 1} / {len(ENGINES)}")
            genetic = tab.locator('#agents tr[data-agent="genetic"]')
            expect(genetic.locator("td").nth(6)).to_have_text("100 %")  # the fallback share
            expect(tab.locator("#bench-next")).to_contain_text("Benchmarks are off")
        finally:
            context.close()


def troubled(overview: dict[str, Any]) -> dict[str, Any]:
    """The appliance's own overview, turned into a bad night on a GPU host."""
    engine = overview["engines"][0]
    engine.update(
        up=False, state="BACKOFF", restarts=3, breaker="open", breaker_failures=5,
        last_error="exited with status 1 (CUDA out of memory)",
    )  # fmt: skip
    kai = next(a for a in overview["agents"] if a["agent"] == "kai")
    kai.update(p50_s=6.5, p95_s=11.25, verdict="worse", shed_rate=0.12, samples=40)
    overview["appliance"]["status"] = "degraded"
    overview["gpus"] = {
        "state": "ok",
        "devices": [
            {"index": i, "name": "NVIDIA A100-SXM4-40GB", "memory_total_mib": 40960,
             "memory_used_mib": used, "memory_free_mib": 40960 - used,
             "utilization_percent": util, "memory_utilization_percent": 50,
             "temperature_c": temp}
            for i, (used, util, temp) in enumerate(((39900, 97, 81), (30000, 64, 66)))
        ],
    }  # fmt: skip
    return overview


def test_trouble_is_plain_to_see(page: tuple[Any, Recorded], appliance: Appliance) -> None:
    """What the simulator cannot show (GPUs, a failing engine, a slow agent), from the page's
    own data with those parts changed."""
    from playwright.sync_api import Route, expect

    tab, _ = page
    real = appliance.get("/admin/overview", headers={"Authorization": f"Bearer {KEY}"}).json()

    def serve(route: Route) -> None:
        route.fulfill(json=troubled(real))

    def hour(route: Route) -> None:
        # kai's P95 climbs through its band of 5-8 s and stays above it for the last 20 minutes.
        now = real["generated_at"]
        body = appliance.get("/admin/history", headers={"Authorization": f"Bearer {KEY}"}).json()
        body["now"] = now
        body["agents"]["kai"]["points"] = [
            [now - 3600 + 30 * i, 4.0 + 7.0 * i / 119] for i in range(120)
        ]
        route.fulfill(json=body)

    tab.route("**/admin/overview", serve)
    tab.route("**/admin/history", hour)
    sign_in(tab, appliance, KEY)
    expect(tab.locator("#status")).to_have_text("degraded")
    down = tab.locator(f'#engines tr[data-engine="{real["engines"][0]["id"]}"]')
    expect(down).to_contain_text("BACKOFF")
    expect(down).to_contain_text("open (5 failed)")
    expect(down).to_contain_text("CUDA out of memory")
    expect(tab.locator("#c-engines")).to_have_text(f"{len(ENGINES) - 1} / {len(ENGINES)}")
    expect(tab.locator("#c-over")).to_have_text("kai")
    expect(tab.locator('#agents tr[data-agent="kai"]')).to_contain_text("over band")
    expect(tab.locator("#c-shed")).to_have_text("12 %")
    gpus = tab.locator("#gpus tbody tr")
    expect(gpus).to_have_count(2)
    expect(gpus.first).to_contain_text("A100")
    expect(gpus.first).to_contain_text("97 %")
    expect(gpus.first).to_contain_text("81 °C")
    full = gpus.first.locator(".fill.high")  # 97 % of the memory: drawn nearly full, in red
    share = full.evaluate("e => e.offsetWidth / e.parentElement.offsetWidth")
    assert 0.95 <= share <= 1.0
    expect(tab.locator("#c-gpus")).to_have_text("2 GPUs")
    chart = tab.locator('#charts [data-chart="kai"]')
    expect(chart.locator("polyline")).to_be_attached()
    expect(chart).to_contain_text("120 samples in the last hour")
    expect(chart).to_contain_text("51 above the band")
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "ops-page-trouble.png"), full_page=True)
