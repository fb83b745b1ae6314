"""Schema answers validate (checked with the `jsonschema` package) and are chosen predictably."""

from __future__ import annotations

import jsonschema
import pytest

from appliance.simulator.schema_instance import SchemaError, instance

GUARDRAIL = {
    "type": "object",
    "properties": {
        "safe": {"type": "boolean"},
        "category": {"type": "string", "enum": ["none", "self_harm", "violence"]},
        "risk": {"type": "number", "minimum": 0, "maximum": 1},
        "reason": {"type": "string", "maxLength": 5},
    },
    "required": ["safe", "category", "risk"],
    "additionalProperties": False,
}
TRAITS = {
    "$defs": {
        "trait": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "minLength": 12},
                "score": {"type": "integer", "minimum": 1, "maximum": 5},
                "evidence": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
            },
            "required": ["name", "score"],
        }
    },
    "type": "object",
    "properties": {
        "traits": {"type": "array", "items": {"$ref": "#/$defs/trait"}, "minItems": 2},
        "summary": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "confidence": {"oneOf": [{"type": "number", "exclusiveMinimum": 0.5, "maximum": 1}]},
    },
    "required": ["traits", "summary"],
}
WELLNESS = {
    "type": "object",
    "definitions": {"level": {"type": "string", "enum": ["low", "medium", "high"]}},
    "properties": {
        "mood": {"$ref": "#/definitions/level"},
        "patterns": {
            "type": "array",
            "items": {"type": "string", "enum": ["sleep", "stress", "social"]},
            "minItems": 2,
            "maxItems": 2,
            "uniqueItems": True,
        },
        "follow_up": {"type": ["boolean", "null"]},
        "note": {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
        "kind": {"const": "wellness"},
        "when": {"type": "string", "format": "date-time"},
        "count": {"type": "integer", "exclusiveMinimum": 3, "multipleOf": 5},
        "meta": {
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
                {"properties": {"b": {"type": "string"}}, "required": ["b"]},
            ]
        },
    },
    "required": ["mood", "patterns", "kind", "count", "meta"],
}
TUPLE = {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "minItems": 2}
RECURSIVE = {
    "$ref": "#/$defs/node",
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        }
    },
}


@pytest.mark.parametrize(
    "schema",
    [GUARDRAIL, TRAITS, WELLNESS, TUPLE, RECURSIVE, {}, {"type": "string", "minLength": 40}],
    ids=[
        "guardrail",
        "traits-ref-anyof",
        "wellness-enum-allof",
        "tuple",
        "recursive",
        "any",
        "long",
    ],
)
def test_the_answer_validates_against_the_schema(schema):
    jsonschema.validate(instance(schema), schema, cls=jsonschema.Draft202012Validator)


def test_enums_take_their_first_value_so_callers_can_make_the_benign_one_the_default():
    answer = instance(GUARDRAIL)
    assert answer["category"] == "none"
    assert answer["safe"] is False
    assert answer["risk"] == 0.0


def test_default_and_examples_win_over_the_generic_choice():
    schema = {
        "type": "object",
        "properties": {
            "safe": {"type": "boolean", "default": True},
            "label": {"type": "string", "examples": ["calm", "tense"]},
            "level": {"enum": ["low", "high"], "default": "high"},
        },
    }
    assert instance(schema) == {"safe": True, "label": "calm", "level": "high"}


def test_objects_carry_required_and_optional_properties_and_arrays_their_minimum():
    answer = instance(TRAITS)
    assert len(answer["traits"]) == 2
    assert answer["traits"][0]["score"] == 1
    assert len(answer["traits"][0]["name"]) >= 12
    assert answer["summary"] == "simulated"  # the first anyOf branch
    assert 0.5 < answer["confidence"] <= 1


def test_unique_items_are_made_distinct():
    assert instance(WELLNESS)["patterns"] == ["sleep", "stress"]


def test_the_same_schema_always_gives_the_same_answer():
    assert instance(WELLNESS) == instance(WELLNESS)


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/schema.json"}, "local references"),
        ({"$ref": "#/$defs/missing"}, "points nowhere"),
        ({"type": "object", "properties": {"x": False}}, "admits no value"),
        ({"$ref": "#"}, "circle"),
        ([1, 2], "must be an object"),
    ],
)
def test_schemas_it_cannot_answer_are_refused_with_a_reason(schema, message):
    with pytest.raises(SchemaError, match=message):
        instance(schema)
