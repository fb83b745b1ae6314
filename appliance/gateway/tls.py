"""One TLS and proxy set-up for every call the appliance makes to an engine.

Chat completions (`http1.Pool`, the passthrough's and the agents' alike) and the health and
metrics GETs all take their trust from `client_context`, so an engine that one of them can reach
the other can too:

- system trust: OpenSSL's default locations, which honour `SSL_CERT_FILE` and `SSL_CERT_DIR`
  (a private CA trusted that way works everywhere); certifi's bundle only when those locations
  hold no CA at all (a minimal container);
- plus `ca_file` where set (an external engine's own, else `[llm] ca_file`): a PEM bundle of
  the CAs that sign the engine's certificate.

Proxies come from `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY` (either case), as curl reads them;
loopback is never proxied. A certificate that fails verification is logged once per engine and
reason, naming the engine, the host and OpenSSL's verify message.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
from urllib.parse import urlsplit

from appliance.errors import ConfigError

log = logging.getLogger("appliance.gateway.tls")

_reported: set[tuple[str, str]] = set()


@functools.lru_cache(maxsize=16)
def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The context for HTTPS to engines (one per CA file, shared by every caller)."""
    context = ssl.create_default_context()
    if not context.cert_store_stats().get("x509_ca"):
        try:
            import certifi

            context.load_verify_locations(cafile=certifi.where())
        except (ImportError, OSError):
            pass  # nothing better to trust; a verify failure will say so
    if ca_file:
        context.load_verify_locations(cafile=os.path.expanduser(ca_file))
    return context


def checked_context(ca_file: str | None, source: str, key: str) -> ssl.SSLContext:
    """`client_context`, with an unreadable `ca_file` reported as a config error."""
    try:
        return client_context(ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            source, key, "a readable PEM file of CA certificates", got=f"{ca_file!r} ({exc})"
        ) from None


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def proxy_for(url: str, env: dict[str, str] | None = None) -> str | None:
    """The proxy URL for `url` from the environment, or None (loopback and NO_PROXY hosts)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or is_loopback(host):
        return None
    environ = os.environ if env is None else env
    found: dict[str, str] = {}
    for name, value in environ.items():
        lowered = name.lower()
        if lowered.endswith("_proxy") and value:
            found.setdefault(lowered[: -len("_proxy")], value)
    no_proxy = found.get("no", "")
    if no_proxy == "*" or (no_proxy and _bypassed(host, parts.port, no_proxy)):
        return None
    return found.get(parts.scheme) or found.get("all")


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """NO_PROXY as curl reads it: names match themselves and their subdomains, a leading dot
    is optional, `host:port` limits an entry to one port, addresses may be CIDR ranges."""
    host = host.lower().strip("[]")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and (not entry_port.isdigit() or port != int(entry_port)):
            continue
        name = name.lstrip(".")
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False):
                return True
            continue
        except ValueError:
            pass
        if host == name or host.endswith("." + name):
            return True
    return False


def certificate_failure(exc: BaseException | None) -> ssl.SSLCertVerificationError | None:
    """The certificate error under `exc` (httpx and openai wrap it), if that is what failed."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def report(engine_id: str, url: str, exc: BaseException) -> bool:
    """Log a certificate failure under `exc` once per engine and reason; True when it was one."""
    failure = certificate_failure(exc)
    if failure is None:
        return False
    reason = failure.verify_message or failure.reason or str(failure)
    if (engine_id, reason) not in _reported:
        _reported.add((engine_id, reason))
        log.error(
            "engine %s: TLS certificate of %s not trusted: %s (set ca_file for the engine, or "
            "[llm] ca_file, to the CA that signs it)",
            engine_id,
            urlsplit(url).hostname or url,
            reason,
        )
    return True
