"""The `metrics` section: where the Prometheus endpoint listens, how many top talkers it names.

    metrics: { listen: "127.0.0.1:9108", top_talkers: 20 }

`top_talkers` is the only per-address label gatewayd exports: the N hosts that moved
the most bytes, so the series count stays bounded whatever the LAN does.
"""

from __future__ import annotations

from yaml.nodes import Node, ScalarNode

from gatewayd.policy.fields import parse_listen
from gatewayd.policy.model import (
    DEFAULT_METRICS_LISTEN,
    DEFAULT_TOP_TALKERS,
    MetricsSettings,
)
from gatewayd.policy.schema_parts import Schema, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    check_keys,
    field_at,
    integer_of,
    is_null,
    mapping_entries,
)

METRICS_KEYS = ("listen", "top_talkers")
MAX_TOP_TALKERS = 100  # each one is a few series per scrape; a page of names is what a person reads


def read_metrics(node: Node | None, checker: Checker) -> MetricsSettings:
    if node is None or is_null(node):
        return MetricsSettings()
    entries = mapping_entries(node, checker, "'metrics'")
    known = check_keys(entries or [], checker, "'metrics'", METRICS_KEYS)
    top_talkers = DEFAULT_TOP_TALKERS
    if "top_talkers" in known:
        count = integer_of(known["top_talkers"].value, checker, "'top_talkers'", 0, MAX_TOP_TALKERS)
        top_talkers = count if count is not None else top_talkers
    listen = _listen_of(known["listen"].value, checker) if "listen" in known else DEFAULT_METRICS_LISTEN
    return MetricsSettings(listen, top_talkers)


def _listen_of(listen_node: Node, checker: Checker) -> str:
    if not isinstance(listen_node, ScalarNode) or is_null(listen_node):
        checker.report(
            listen_node, 'metrics listen must be "HOST:PORT" (quote IPv6 addresses: "[::1]:9108")'
        )
        return DEFAULT_METRICS_LISTEN
    return field_at(checker, listen_node, parse_listen, listen_node.value) or DEFAULT_METRICS_LISTEN


def metrics_schema() -> Schema:
    return object_schema(
        "Prometheus endpoint.",
        {
            "listen": string_schema('"HOST:PORT"; IPv6 as "[::1]:9108". Default 127.0.0.1:9108.'),
            "top_talkers": {
                "type": "integer", "minimum": 0, "maximum": MAX_TOP_TALKERS,
                "description": "Hosts exported by address in gatewayd_top_talker_bytes (the busiest ones). "
                               f"Default {DEFAULT_TOP_TALKERS}; 0 names none.",
            },
        },
    )
