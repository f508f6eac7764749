"""The `metrics` section: where the Prometheus endpoint listens.

    metrics: { listen: "127.0.0.1:9108" }
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from gatewayd.policy.fields import parse_listen
from gatewayd.policy.schema_parts import Schema, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    check_keys,
    field_at,
    is_null,
    mapping_entries,
)

METRICS_KEYS = ("listen",)
DEFAULT_LISTEN = "127.0.0.1:9108"


def read_metrics(node: Node | None, checker: Checker) -> str:
    if node is None or is_null(node):
        return DEFAULT_LISTEN
    entries = mapping_entries(node, checker, "'metrics'")
    known = check_keys(entries or [], checker, "'metrics'", METRICS_KEYS)
    if "listen" not in known:
        return DEFAULT_LISTEN
    listen_node = known["listen"].value
    if not isinstance(listen_node, ScalarNode) or is_null(listen_node):
        checker.report(
            listen_node, 'metrics listen must be "HOST:PORT" (quote IPv6 addresses: "[::1]:9108")'
        )
        return DEFAULT_LISTEN
    return field_at(checker, listen_node, parse_listen, listen_node.value) or DEFAULT_LISTEN


def metrics_schema() -> Schema:
    return object_schema(
        "Prometheus endpoint.",
        {"listen": string_schema('"HOST:PORT"; IPv6 as "[::1]:9108". Default 127.0.0.1:9108.')},
    )
