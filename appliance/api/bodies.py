"""JSON request bodies, decoded in one place: a nesting cap, and errors that say what and where.

Every route that takes a body goes through `decode`: the raw chat passthrough directly, the Litestar
routes through `ApplianceRequest.json()`. The nesting cap comes first because decoding to `Any`
recurses once per level: about a thousand levels reach Python's recursion limit, a RecursionError
and a 500. No request the appliance serves needs more than a few levels.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.types import Empty

from appliance.errors import BadRequest

MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_decode_any = msgspec.json.Decoder().decode


def nesting_depth(body: bytes) -> int:
    """How deep arrays and objects nest, outside strings (an upper bound on invalid JSON)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", body))
    depth = deepest = 0
    for byte in brackets:
        if byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_depth(body: bytes, limit: int = MAX_DEPTH) -> None:
    # Counting brackets is a C-speed scan; only a body with many of them is walked.
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    depth = nesting_depth(body)
    if depth > limit:
        raise BadRequest(
            f"The request body nests {depth} levels deep; at most {limit} are accepted.",
            code="too_deeply_nested",
        )


def decode(body: bytes, kind: Any = Any, *, decoder: Any = None) -> Any:
    """`body` as `kind`, or a `BadRequest` that names the field or the byte at fault."""
    check_depth(body)
    try:
        if decoder is not None:
            return decoder(body)
        return _decode_any(body) if kind is Any else msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        raise invalid(str(exc)) from None
    except msgspec.DecodeError:
        raise syntax_error(body) from None


def invalid(message: str) -> BadRequest:
    """A msgspec validation message (`Expected ... - at `$.a[0]``) as a 400 naming the field."""
    match = _AT.match(message)
    text, path = (match["msg"], match["path"]) if match else (message, None)
    param = path.lstrip(".") if path else None
    where = f" at `{param}`" if param else ""
    return BadRequest(
        f"Invalid request body{where}: {_lower(text)}.", param=param, code="invalid_request"
    )


def syntax_error(body: bytes) -> BadRequest:
    """Why `body` is not JSON, from the standard parser, which says what it expected and where."""
    if not body.strip():
        return BadRequest("The request body is empty: expected a JSON object.", code="empty_body")
    try:
        json.loads(body)
    except json.JSONDecodeError as exc:
        return BadRequest(
            f"The request body is not valid JSON: {exc.msg.lower()} at line {exc.lineno}, "
            f"column {exc.colno} (byte {exc.pos}).",
            code="invalid_json",
        )
    except (UnicodeDecodeError, RecursionError):
        pass
    return BadRequest("The request body is not valid UTF-8 JSON.", code="invalid_json")


def _lower(text: str) -> str:
    text = text.rstrip(".")
    return text[:1].lower() + text[1:]


class ApplianceRequest(Request[Any, Any, Any]):
    """Litestar's request, with bodies decoded by `decode` (nesting cap, clear errors)."""

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                body = await self.body()
                value = None if not body.strip() and _data_optional(self) else decode(body)
                self._json = self._connection_state.json = value
        return self._json


def _data_optional(request: Request[Any, Any, Any]) -> bool:
    field = request.route_handler.parsed_fn_signature.parameters.get("data")
    return field is None or field.is_optional or field.has_default
