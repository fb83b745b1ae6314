"""Every call to an HTTPS engine trusts the same CAs: passthrough, health, metrics, agents.

A private CA and a server certificate for 127.0.0.1 are made here with the `openssl` command;
the engine is the simulator served over TLS by uvicorn in its own process.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx2
import pytest

from appliance.config.schema import LLMSettings
from appliance.engines.base import Endpoint
from appliance.engines.health import HttpHealthProbe
from appliance.errors import EngineConnectionError
from appliance.gateway import tls
from appliance.gateway.client import EngineClient
from appliance.gateway.completion import request_completion
from appliance.gateway.http1 import Pool
from appliance.monitor.engine_metrics import EngineMetricsScraper
from tests.support.running import free_port

pytestmark = pytest.mark.integration
MODEL = "tls-model"
CHAT = b'{"model":"tls-model","messages":[{"role":"user","content":"hi"}],"max_tokens":3}'


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    assert openssl, "the openssl command is needed to make the test's CA"
    subprocess.run([openssl, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    """ca.pem signs server.pem (for IP 127.0.0.1); other-ca.pem signs nothing here."""
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", *ec, "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
            "-subj", f"/CN=Appliance test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d,
        )  # fmt: skip
    _openssl(
        *("req", *ec),
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=d,
    )
    (d / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=d,
    )  # fmt: skip
    return d


@pytest.fixture(scope="module")
def https_engine(pki):
    """The simulator on https://127.0.0.1:PORT, key `k`."""
    port = free_port()
    script = textwrap.dedent(
        f"""
        import uvicorn
        from appliance.simulator.options import SimOptions
        from appliance.simulator.server import Simulator
        app = Simulator(SimOptions(model={MODEL!r}, served_model_names=({MODEL!r},),
                                   api_key="k", time_scale=0.0))
        uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning",
                    ssl_certfile={str(pki / "server.pem")!r},
                    ssl_keyfile={str(pki / "server.key")!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx2.get(f"{url}/health", verify=trusted, timeout=2).status_code == 200:
                break
        except httpx2.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("the HTTPS simulator did not start")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch):
    """No inherited SSL_CERT_FILE or proxies; contexts and reports rebuilt per test."""
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "https_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    tls.client_context.cache_clear()
    tls._reported.clear()
    yield
    tls.client_context.cache_clear()


def _client(url: str, ca_file: str | None = None) -> EngineClient:
    endpoint = Endpoint(
        engine_id="ext", base_url=f"{url}/v1", api_key="k", names=(MODEL,), launched=False,
        ca_file=ca_file,
    )  # fmt: skip
    return EngineClient(endpoint, LLMSettings(timeout=20.0))


async def _all_four(client: EngineClient, url: str, ca_file: str | None) -> dict[str, object]:
    """The passthrough, a health probe, a metrics scrape and an agent call, as the appliance
    makes them; each result or the exception it raised."""
    results: dict[str, object] = {}
    try:
        upstream = await client.post_chat(CHAT)
        results["passthrough"] = (upstream.status, await upstream.read())
    except Exception as exc:
        results["passthrough"] = exc
    probe = HttpHealthProbe(timeout_s=10.0, ca_file=ca_file)
    results["health_probe"] = await probe.check(f"{url}/health")
    await probe.aclose()
    try:
        results["liveness_get"] = (await client.get("/v1/models", timeout=10.0)).status_code
    except Exception as exc:
        results["liveness_get"] = exc
    scraper = EngineMetricsScraper({"ext": client}, timeout_s=10.0)
    results["metrics"] = await scraper.scrape("ext")
    try:
        answer = await request_completion(
            client,
            {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        )
        results["agent"] = answer.model
    except Exception as exc:
        results["agent"] = exc
    await client.aclose()
    return results


def _all_succeeded(results: dict[str, object]) -> None:
    status, body = results["passthrough"]  # type: ignore[misc]
    assert status == 200 and b"chat.completion" in body
    assert results["health_probe"] is True
    assert results["liveness_get"] == 200
    load = results["metrics"]
    assert load.error is None and load.running == 0  # type: ignore[attr-defined]
    assert results["agent"] == MODEL


async def test_an_untrusted_certificate_fails_every_path_and_is_named_in_the_log(
    https_engine, caplog
):
    caplog.set_level(logging.ERROR, logger="appliance.gateway.tls")
    results = await _all_four(_client(https_engine), https_engine, None)
    assert isinstance(results["passthrough"], EngineConnectionError)
    assert "not trusted" in str(results["passthrough"])
    assert results["health_probe"] is False
    assert isinstance(results["liveness_get"], httpx2.ConnectError)
    assert results["metrics"].error is not None  # type: ignore[attr-defined]
    assert isinstance(results["agent"], EngineConnectionError)
    lines = [r.getMessage() for r in caplog.records]
    assert any(
        line.startswith("engine ext: TLS certificate of 127.0.0.1 not trusted: ")
        and "unable to get local issuer certificate" in line
        for line in lines
    ), lines


async def test_the_engines_ca_file_is_trusted_by_every_path(https_engine, pki):
    ca = str(pki / "ca.pem")
    _all_succeeded(await _all_four(_client(https_engine, ca), https_engine, ca))


async def test_llm_ca_file_is_the_default_for_every_engine(https_engine, pki):
    endpoint = Endpoint(
        engine_id="ext", base_url=f"{https_engine}/v1", api_key="k", names=(MODEL,),
        launched=False,
    )  # fmt: skip
    client = EngineClient(endpoint, LLMSettings(timeout=20.0, ca_file=str(pki / "ca.pem")))
    upstream = await client.post_chat(CHAT)
    assert upstream.status == 200
    await upstream.read()
    assert (await client.get("/health", timeout=10.0)).status_code == 200
    await client.aclose()


async def test_a_private_ca_in_ssl_cert_file_is_trusted_by_every_path(
    https_engine, pki, monkeypatch
):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki / "ca.pem"))
    tls.client_context.cache_clear()
    _all_succeeded(await _all_four(_client(https_engine), https_engine, None))


async def test_another_ca_is_not_enough(https_engine, pki):
    other = str(pki / "other-ca.pem")
    results = await _all_four(_client(https_engine, other), https_engine, other)
    assert isinstance(results["passthrough"], EngineConnectionError)
    assert isinstance(results["agent"], EngineConnectionError)


async def test_the_passthrough_tunnels_through_a_proxy_with_connect(https_engine, pki):
    tunnels: list[bytes] = []
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        tunnels.append(head.split(b"\r\n")[0])
        host, port = head.split(b" ")[1].decode().rsplit(":", 1)
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        closed.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    proxy_port = server.sockets[0].getsockname()[1]
    pool = Pool(
        f"{https_engine}/v1",
        ssl_context=tls.client_context(str(pki / "ca.pem")),
        proxy=f"http://127.0.0.1:{proxy_port}",
        engine_id="ext",
    )
    head = pool.prepare("/chat/completions", {"authorization": "Bearer k"})
    response = await pool.post(head, CHAT, timeout=20.0)
    assert response.status == 200 and b"chat.completion" in await response.read()
    port = https_engine.rsplit(":", 1)[1]
    assert tunnels == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]
    await pool.aclose()
    await asyncio.wait_for(closed.wait(), 30)  # closing the pool ends the tunnel
    server.close()
    await server.wait_closed()


def test_proxies_follow_the_environment_and_never_take_loopback():
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".internal,10.0.0.0/8,api.x:8443"}
    assert tls.proxy_for("https://llm.example.com/v1", env) == "http://proxy:3128"
    assert tls.proxy_for("https://127.0.0.1:8101/v1", env) is None
    assert tls.proxy_for("https://localhost/v1", env) is None
    assert tls.proxy_for("https://llm.internal/v1", env) is None
    assert tls.proxy_for("https://10.1.2.3/v1", env) is None
    assert tls.proxy_for("https://api.x:8443/v1", env) is None
    assert tls.proxy_for("https://api.x/v1", env) == "http://proxy:3128"
    assert tls.proxy_for("http://llm.example.com/v1", env) is None  # no HTTP_PROXY
    assert tls.proxy_for("http://llm.example.com/v1", {"all_proxy": "http://p:1"}) == "http://p:1"
    assert tls.proxy_for("https://x.example/v1", {**env, "NO_PROXY": "*"}) is None


def test_an_unreadable_ca_file_is_a_config_error(tmp_path):
    from appliance.config.schema import EngineConfig
    from appliance.engines import external
    from appliance.errors import ConfigError

    engine = EngineConfig(
        id="ext", kind="external", model="m", base_url="https://x.example",
        ca_file=str(tmp_path / "missing.pem"),
    )  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        external.endpoint(engine)
    assert str(caught.value).startswith(
        "models.toml: engines.ext.ca_file: expected a readable PEM file of CA certificates"
    )


def test_llm_ca_file_comes_from_the_file_or_the_variable(pki):
    from appliance.config import load_config
    from tests.unit.placement.conftest import MODELS_TOML

    ca = str(pki / "ca.pem")
    config = load_config(MODELS_TOML, profile="sim", env={"LLM_CA_FILE": ca})
    assert config.llm.ca_file == ca
