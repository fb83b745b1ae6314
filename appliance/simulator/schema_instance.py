"""A deterministic JSON value that validates against a JSON Schema, for `response_format` answers.

The choice is predictable so callers can steer it: `const` first, then `default`, then the first of
`examples`, then the FIRST `enum` value (order an enum to put the benign value first). Without
those: objects get every listed property (required and optional), arrays `max(minItems, 1)` items
within `maxItems`, strings "simulated" fitted to minLength/maxLength (and to a simple `pattern`),
numbers the lowest value allowed, booleans false. `anyOf`/`oneOf` and type lists take their first
branch, `allOf` is merged, `$ref` follows local pointers (`#/$defs/...`, `#/definitions/...`).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

Schema = Mapping[str, Any] | bool

# Beyond this nesting only required properties and minItems are produced, so a recursive schema
# ends; beyond MAX_DEPTH it is refused.
LEAN_DEPTH = 8
MAX_DEPTH = 32
OBJECT_JSON = {"simulated": True}
_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00Z",
    "email": "sim@example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "uri": "https://example.com/simulated",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "duration": "PT1S",
}
_OBJECT_KEYS = ("properties", "required", "additionalProperties", "minProperties")
_ARRAY_KEYS = ("items", "prefixItems", "minItems", "maxItems")
_STRING_KEYS = ("minLength", "maxLength", "pattern", "format")
_NUMBER_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")


class SchemaError(ValueError):
    """The schema cannot be answered: remote `$ref`, `false`, endless recursion, not an object."""


JSON_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean", "null"})


def check_schema(schema: object) -> None:
    """Refuse what vLLM's grammar compiler refuses: a schema that is not an object, an unknown
    `type`, `properties` that are not schemas, a `required` that is not a list of names."""
    if isinstance(schema, bool):
        return
    if not isinstance(schema, Mapping):
        raise SchemaError("the JSON schema must be an object")
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind is not None and kind not in JSON_TYPES:
            raise SchemaError(f"Invalid type: {kind}")
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        raise SchemaError("properties must be an object")
    for child in properties.values():
        check_schema(child)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise SchemaError("required must be a list of property names")
    for key in ("items", "additionalProperties"):
        child = schema.get(key)
        if child is not None:
            check_schema(child)
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []) if isinstance(schema.get(key), list) else []:
            check_schema(child)


def instance(schema: object) -> object:
    """A value valid against `schema` (a decoded JSON Schema)."""
    if not isinstance(schema, Mapping | bool):
        raise SchemaError("the JSON schema must be an object")
    return _Builder(schema).build(schema, 0, 0)


class _Builder:
    def __init__(self, root: Schema) -> None:
        self.root = root

    def build(self, schema: object, depth: int, variant: int) -> object:
        if depth > MAX_DEPTH:
            raise SchemaError(f"the schema nests deeper than {MAX_DEPTH} levels")
        if schema is True:
            return "simulated"
        if schema is False:
            raise SchemaError("a `false` schema admits no value")
        if not isinstance(schema, Mapping):
            raise SchemaError("every subschema must be an object or a boolean")
        schema = self._flatten(schema, depth)
        for key in ("const", "default"):
            if key in schema:
                return schema[key]
        for key in ("examples", "enum"):
            choices = schema.get(key)
            if isinstance(choices, list) and choices:
                return choices[variant % len(choices)]
        kind = _kind(schema)
        if kind == "object":
            return self._object(schema, depth)
        if kind == "array":
            return self._array(schema, depth)
        if kind == "string":
            return _string(schema, variant)
        if kind == "integer":
            return _integer(schema, variant)
        if kind == "number":
            return _number(schema)
        if kind == "boolean":
            return variant % 2 == 1
        if kind == "null":
            return None
        return "simulated"

    def _flatten(self, schema: Mapping[str, Any], depth: int) -> Mapping[str, Any]:
        """Follow `$ref`, merge `allOf`, take the first `anyOf`/`oneOf` branch."""
        for _ in range(MAX_DEPTH):
            if "$ref" in schema:
                target = self._resolve(schema["$ref"])
                rest = {k: v for k, v in schema.items() if k != "$ref"}
                schema = _merge(target, rest) if rest else target
            elif "allOf" in schema:
                merged: Mapping[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
                for part in _list(schema["allOf"], "allOf"):
                    merged = _merge(merged, self._flatten(_mapping(part), depth))
                schema = merged
            elif "anyOf" in schema or "oneOf" in schema:
                key = "anyOf" if "anyOf" in schema else "oneOf"
                first = _list(schema[key], key)[0]
                rest = {k: v for k, v in schema.items() if k != key}
                schema = _merge(rest, _mapping(first))
            else:
                return schema
        raise SchemaError("the schema's references go round in a circle")

    def _resolve(self, ref: object) -> Mapping[str, Any]:
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise SchemaError(f"only local references (#/...) are supported, got {ref!r}")
        node: object = self.root
        for raw in ref[1:].split("/")[1:] if ref != "#" else []:
            part = unquote(raw).replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise SchemaError(f"the reference {ref!r} points nowhere")
        return _mapping(node)

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, object]:
        properties = schema.get("properties") or {}
        required = [str(name) for name in schema.get("required") or []]
        extra = schema.get("additionalProperties", True)
        out: dict[str, object] = {}
        for name, sub in properties.items():
            if depth < LEAN_DEPTH or name in required:
                out[name] = self.build(sub, depth + 1, 0)
        for name in required:
            if name not in out:
                out[name] = self.build(extra if extra is not False else True, depth + 1, 0)
        want = int(schema.get("minProperties") or 0)
        while len(out) < want and extra is not False:
            out[f"extra_{len(out)}"] = self.build(extra, depth + 1, 0)
        return out

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[object]:
        low = int(schema.get("minItems") or 0)
        high = schema.get("maxItems")
        count = low if depth >= LEAN_DEPTH else max(low, 1)
        if high is not None:
            count = min(count, int(high))
        items = schema.get("items", True)
        prefix = schema.get("prefixItems")
        if isinstance(items, list):  # draft 4-7 tuple form
            prefix, items = items, schema.get("additionalItems", True)
        prefix = prefix or []
        if "contains" in schema and not prefix and items is True:
            prefix = [schema["contains"]]
        unique = bool(schema.get("uniqueItems"))
        out: list[object] = []
        for i in range(count):
            sub = prefix[i] if i < len(prefix) else items
            if sub is False:
                break
            out.append(self.build(sub, depth + 1, i if unique else 0))
        return out


def _kind(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if isinstance(kind, str):
        return kind
    for keys, inferred in (
        (_OBJECT_KEYS, "object"),
        (_ARRAY_KEYS, "array"),
        (_STRING_KEYS, "string"),
        (_NUMBER_KEYS, "number"),
    ):
        if any(key in schema for key in keys):
            return inferred
    return None


def _string(schema: Mapping[str, Any], variant: int) -> str:
    low = int(schema.get("minLength") or 0)
    high = schema.get("maxLength")
    pattern = schema.get("pattern")
    text = _FORMATS.get(str(schema.get("format")), "simulated")
    if isinstance(pattern, str) and not re.search(pattern, text):
        text = _pattern_text(pattern) or text
    if variant:
        text = f"{text}{variant}"
    if len(text) < low:
        text = (text + "-" + "x" * low)[:low]
    if high is not None and len(text) > int(high):
        text = text[: int(high)]
    return text


def _integer(schema: Mapping[str, Any], variant: int) -> int:
    low, high = _bounds(schema)
    lowest = None if low is None else (math.floor(low[0]) + 1 if low[1] else math.ceil(low[0]))
    highest = None if high is None else (math.ceil(high[0]) - 1 if high[1] else math.floor(high[0]))
    value = lowest if lowest is not None else 0
    if highest is not None and value > highest:
        value = highest
    step = schema.get("multipleOf")
    if isinstance(step, int) and step > 0:
        value = -(-value // step) * step
        value += variant * step
    else:
        value += variant
    if highest is not None and value > highest:
        value = highest
    return value


def _number(schema: Mapping[str, Any]) -> float:
    low, high = _bounds(schema)
    if low is not None and not low[1]:
        value = float(low[0])
    elif low is not None:
        value = (low[0] + high[0]) / 2 if high is not None else low[0] + 1.0
    elif high is None or high[0] > 0:
        value = 0.0
    else:
        value = float(high[0]) - (1.0 if high[1] else 0.0)
    step = schema.get("multipleOf")
    if isinstance(step, int | float) and step > 0:
        value = math.ceil(value / step) * step
    return value


def _bounds(
    schema: Mapping[str, Any],
) -> tuple[tuple[float, bool] | None, tuple[float, bool] | None]:
    """(value, exclusive) for the lower and upper bound; draft 4's boolean form too."""
    bounds: list[tuple[float, bool] | None] = []
    for inclusive, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        flag = schema.get(exclusive)
        if isinstance(flag, int | float) and not isinstance(flag, bool):
            bounds.append((flag, True))
        elif isinstance(schema.get(inclusive), int | float):
            bounds.append((schema[inclusive], flag is True))
        else:
            bounds.append(None)
    return bounds[0], bounds[1]


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if key == "properties" and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        elif key == "required" and isinstance(out.get(key), list):
            out[key] = list(dict.fromkeys([*out[key], *value]))
        elif key in ("minimum", "minLength", "minItems") and key in out:
            out[key] = max(out[key], value)
        elif key in ("maximum", "maxLength", "maxItems") and key in out:
            out[key] = min(out[key], value)
        else:
            out[key] = value
    return out


def _mapping(node: object) -> Mapping[str, Any]:
    if node is True:
        return {}
    if not isinstance(node, Mapping):
        raise SchemaError("every subschema must be an object")
    return node


def _list(node: object, key: str) -> list[object]:
    if not isinstance(node, list) or not node:
        raise SchemaError(f"`{key}` must be a non-empty list")
    return node


def _pattern_text(pattern: str) -> str | None:
    """A string matching a simple regular expression, or None when it is beyond this helper."""
    try:
        parser: Any = importlib.import_module("re._parser")
        text = "".join(_emit(parser.parse(pattern)))
    except (re.error, ValueError, KeyError, TypeError, IndexError):
        return None
    return text if re.search(pattern, text) else None


_CATEGORY = {"CATEGORY_DIGIT": "0", "CATEGORY_WORD": "a", "CATEGORY_SPACE": " "}


def _emit(parsed: Any) -> list[str]:
    out: list[str] = []
    for op, arg in parsed:
        name = str(op)
        if name == "LITERAL":
            out.append(chr(arg))
        elif name == "ANY":
            out.append("a")
        elif name == "IN":
            out.append(_first_in(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, body = arg
            out.extend(_emit(body) * low)
        elif name in ("SUBPATTERN", "ATOMIC_GROUP"):
            out.extend(_emit(arg[-1] if name == "SUBPATTERN" else arg))
        elif name == "BRANCH":
            out.extend(_emit(arg[1][0]))
        elif name == "AT":
            continue
        else:
            raise ValueError(name)
    return out


def _first_in(items: Any) -> str:
    for op, arg in items:
        name = str(op)
        if name == "NEGATE":
            raise ValueError(name)
        if name == "LITERAL":
            return chr(arg)
        if name == "RANGE":
            return chr(arg[0])
        if name == "CATEGORY":
            return _CATEGORY[str(arg)]
    raise ValueError("empty set")
