"""Errors to HTTP, in one place: OpenAI-shaped bodies, `Retry-After` where waiting helps."""

from __future__ import annotations

import logging
import math
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from appliance.errors import ApplianceError

log = logging.getLogger("appliance.api")


def error_body(message: str, error_type: str, code: str | None, param: str | None = None) -> bytes:
    return msgspec.json.encode(
        {"error": {"message": message, "type": error_type, "param": param, "code": code}}
    )


def error_parts(exc: ApplianceError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body for an appliance error (used by raw ASGI routes too)."""
    headers = [(b"content-type", b"application/json")]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(math.ceil(exc.retry_after)).encode()))
    return exc.status_code, headers, error_body(exc.message, exc.error_type, exc.code, exc.param)


def appliance_error_handler(_: Request[Any, Any, Any], exc: ApplianceError) -> Response[bytes]:
    status, headers, body = error_parts(exc)
    if status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.message)
    return Response(
        content=body,
        status_code=status,
        headers={k.decode(): v.decode() for k, v in headers},
        media_type="application/json",
    )


def validation_error(exc: ValidationException) -> tuple[str, str | None]:
    """Litestar's validation details as one message naming where, and the first field at fault."""
    parts: list[str] = []
    param: str | None = None
    for entry in exc.extra if isinstance(exc.extra, list) else []:
        if not isinstance(entry, dict):
            continue
        key, message = str(entry.get("key") or ""), str(entry.get("message") or "")
        source = entry.get("source")
        if key == "data" and message in ("'data'", "Object missing required field `data`"):
            parts.append("the request body is empty: expected a JSON object")
            continue
        message = message[:1].lower() + message[1:]
        if key and key != "data":
            where = (
                "query parameter"
                if source == "query"
                else "path parameter"
                if source == "path"
                else "field"
            )
            parts.append(f"{where} `{key}`: {message}")
            param = param or key
        else:
            parts.append(f"body: {message}")
    detail = "; ".join(parts) or exc.detail
    return f"Invalid request: {detail}.", param


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc, ValidationException):
        message, param = validation_error(exc)
        body = error_body(message, "invalid_request_error", "invalid_request", param)
    else:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = error_body(exc.detail, kind, None)
    return Response(
        content=body,
        status_code=exc.status_code,
        headers=dict(exc.headers or {}),
        media_type="application/json",
    )


def unexpected_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.error("unexpected error: %s", type(exc).__name__, exc_info=exc)
    return Response(
        content=error_body("Internal error in the appliance.", "server_error", "internal_error"),
        status_code=500,
        media_type="application/json",
    )


EXCEPTION_HANDLERS = {
    ApplianceError: appliance_error_handler,
    HTTPException: http_error_handler,
    Exception: unexpected_error_handler,
}
