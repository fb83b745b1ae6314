"""Reliable JSON from a model: ask with a JSON schema, validate, repair once, else a clear error.

The schema comes from the msgspec struct itself (`msgspec.json.schema`) and goes out as
`response_format` `json_schema`, which vLLM turns into guided decoding. The answer is decoded with
the same struct, so its constraints (ranges, enums, lengths, cross-field checks) are enforced here
too. One repair attempt shows the model its answer and what was wrong; a second failure raises
`InvalidModelOutput`. Nothing unvalidated is ever returned.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from typing import Any, Generic, TypeVar

import msgspec

from appliance.agents.calling import AgentCaller, Message
from appliance.errors import InvalidModelOutput
from appliance.gateway.gateway import Completion

log = logging.getLogger("appliance.agents.json")
T = TypeVar("T", bound=msgspec.Struct)

MAX_ECHO_CHARS = 4000
REPAIR_PROMPT = (
    "Your previous answer was not valid: {error}. Answer again with only a JSON object that "
    "matches the schema exactly: no prose, no code fences, no extra fields."
)
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


@cache
def json_schema(kind: type[msgspec.Struct]) -> dict[str, Any]:
    """The struct's JSON schema with the root inlined (guided decoders prefer an object root),
    and its keyed lists in their keyed form."""
    schema = msgspec.json.schema(kind)
    defs = dict(schema.get("$defs", {}))
    ref = schema.get("$ref", "")
    if not ref.startswith("#/$defs/"):
        return schema
    root = dict(defs.pop(ref.removeprefix("#/$defs/")))
    if _refers(root, ref) or _refers(defs, ref):
        return schema  # a recursive root keeps the reference form
    for field, key in keyed_lists(kind).items():
        root["properties"] = {
            **root["properties"],
            field: _keyed(root["properties"][field], key, defs),
        }
    if defs:
        root["$defs"] = defs
    return root


def keyed_lists(kind: type[msgspec.Struct]) -> dict[str, str]:
    """List fields whose items have a unique enumerated `key`: the model writes them as an object
    from key to the rest of the item, so the grammar itself rules out a key named twice."""
    return dict(getattr(kind, "keyed_lists", {}))


def _keyed(array: dict[str, Any], key: str, defs: dict[str, Any]) -> dict[str, Any]:
    item = array["items"]
    item = defs[item["$ref"].removeprefix("#/$defs/")] if "$ref" in item else item
    rest = {
        **item,
        "properties": {k: v for k, v in item["properties"].items() if k != key},
        "required": [r for r in item.get("required", []) if r != key],
    }
    rest.pop("title", None)
    names = item["properties"][key]["enum"]
    return {
        "type": "object",
        "properties": {name: rest for name in names},
        "additionalProperties": False,
    }


def _refers(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers(v, ref) for v in node)
    return False


def response_format(kind: type[msgspec.Struct]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": kind.__name__, "schema": json_schema(kind)},
    }


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    value: T
    completion: Completion
    repaired: bool


def decode(text: str | None, kind: type[T]) -> T:
    """Validate a model's answer against `kind`; raises `msgspec.ValidationError`/`DecodeError`."""
    if text is None:
        raise msgspec.ValidationError("the answer had no content")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    keyed = keyed_lists(kind)
    if not keyed:
        return msgspec.json.decode(body, type=kind)
    data = msgspec.json.decode(body)
    if isinstance(data, dict):
        for field, key in keyed.items():
            value = data.get(field)
            if isinstance(value, dict):  # the keyed form back to the list the struct holds
                data[field] = [
                    {key: name, **item} if isinstance(item, dict) else item
                    for name, item in value.items()
                ]
    return msgspec.convert(data, kind)


def describe(exc: Exception) -> str:
    """msgspec's reason without quoted values (they may echo user words): safe to log and show."""
    return _QUOTED.sub("'…'", str(exc)).replace("`", "")[:200]


async def complete_json(caller: AgentCaller, messages: list[Message], kind: type[T]) -> Parsed[T]:
    """Ask `caller`'s agent for a `kind`; one repair attempt; else `InvalidModelOutput`."""
    extra = {"response_format": response_format(kind)}
    text, completion = await caller.text(messages, extra=extra)
    try:
        return Parsed(decode(text, kind), completion, repaired=False)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = describe(exc)
    log.warning(
        "%s: %s answered JSON that does not match %s (%s); asking once more",
        caller.agent,
        completion.model,
        kind.__name__,
        error,
    )
    repair = [
        *messages,
        {"role": "assistant", "content": (text or "")[:MAX_ECHO_CHARS]},
        {"role": "user", "content": REPAIR_PROMPT.format(error=error)},
    ]
    text, completion = await caller.text(repair, extra=extra)
    try:
        value = decode(text, kind)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = describe(exc)
        log.error(
            "%s: %s answered invalid JSON again (%s); giving up",
            caller.agent,
            completion.model,
            error,
        )
        raise InvalidModelOutput(
            f"The {caller.agent} model's answer did not match its JSON schema "
            f"({kind.__name__}), even after one repair attempt: {error}."
        ) from None
    log.info("%s: repaired JSON from %s", caller.agent, completion.model)
    return Parsed(value, completion, repaired=True)
