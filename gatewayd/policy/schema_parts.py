"""Building blocks of the policy's JSON Schema, shared by the sections' schema fragments.

Each section's reader module describes its own shape next to the code that
reads it (e.g. policy/groups.py: read_groups and group_schema); policy/schema.py
puts the fragments together.
"""

from __future__ import annotations

from typing import Any

from gatewayd.policy.fields import NAME_PATTERN, RATE_PATTERN, SHARE_PATTERN

Schema = dict[str, Any]

BANDWIDTH_PATTERN = f"({SHARE_PATTERN})|({RATE_PATTERN})"


def string_schema(description: str, **constraints: Any) -> Schema:
    return {"type": "string", "description": description, **constraints}


def one_or_list(item: Schema, description: str) -> Schema:
    return {
        "description": description,
        "anyOf": [item, {"type": "array", "items": item}],
    }


def named_map(description: str, value: Schema, max_properties: int | None = None) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "propertyNames": {"pattern": NAME_PATTERN},
        "additionalProperties": value,
    }
    if max_properties is not None:
        schema["maxProperties"] = max_properties
    return schema


def object_schema(description: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        schema["required"] = list(required)
    return schema


def names_schema(description: str) -> Schema:
    return one_or_list(string_schema("A name defined elsewhere in the policy.", pattern=NAME_PATTERN), description)
