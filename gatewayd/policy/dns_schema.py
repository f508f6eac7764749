"""JSON Schema of the `dns` section (policy/schema.py puts it in the policy's schema)."""

from __future__ import annotations

from typing import Any

from gatewayd.policy.dns import DNS_KEYS, MAX_RESOLVERS

Schema = dict[str, Any]


def dns_schema() -> Schema:
    properties: Schema = {
        "resolvers": {
            "description": "Addresses of the DNS servers the office is told to use; left out = the router "
                           "itself only. Connection caps do not count DNS to them.",
            "anyOf": [
                {"type": "string", "description": "An IPv4/IPv6 address."},
                {"type": "array", "maxItems": MAX_RESOLVERS,
                 "items": {"type": "string", "description": "An IPv4/IPv6 address."}},
            ],
        },
    }
    assert tuple(properties) == DNS_KEYS
    return {"type": "object", "description": "The office's DNS resolvers.", "properties": properties,
            "additionalProperties": False}
