"""The `classifier` section: fail mode, packets inspected per flow, NFQUEUE number, tcp_only.

    classifier: { fail_mode: open, max_packets: 8, queue: 0, tcp_only: [video], host_queue_rate: 2000 }

host_queue_rate bounds, per LAN host, the packets per second the kernel hands to
the classifier (compile/ruleset.py): the queue is one FIFO, so without it one
host opening thousands of flows puts every other host's first packets behind
its own, long enough for their flows to run past max_packets unclassified.

tcp_only names applications, so it is read (policy/tcp_only.py) once they are known.
"""

from __future__ import annotations

import dataclasses

from yaml.nodes import MappingNode, Node, ScalarNode

from gatewayd.policy.fields import literal_of
from gatewayd.policy.model import FAIL_MODES, Application, ClassifierSettings
from gatewayd.policy.schema_parts import (
    Schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.tcp_only import read_tcp_only
from gatewayd.policy.yamltree import (
    Checker,
    check_keys,
    integer_of,
    is_null,
    mapping_entries,
    text_of,
)

CLASSIFIER_KEYS = ("fail_mode", "max_packets", "queue", "tcp_only", "host_queue_rate")
MAX_HOST_QUEUE_RATE = 1_000_000


def read_classifier(node: Node | None, checker: Checker) -> ClassifierSettings:
    defaults = ClassifierSettings()
    if node is None or is_null(node):
        return defaults
    entries = mapping_entries(node, checker, "'classifier'")
    known = check_keys(entries or [], checker, "'classifier'", CLASSIFIER_KEYS)
    fail_mode = defaults.fail_mode
    if "fail_mode" in known:
        mode_node = known["fail_mode"].value
        mode = text_of(mode_node, checker, "'fail_mode' of 'classifier'")
        chosen = literal_of(mode, FAIL_MODES) if mode is not None else None
        if mode is not None and chosen is None:
            checker.report(mode_node, f"fail_mode '{mode}' is not valid (expected open or closed)")
        elif chosen is not None:
            fail_mode = chosen
    max_packets = defaults.max_packets
    if "max_packets" in known:
        max_packets = integer_of(known["max_packets"].value, checker, "'max_packets'", 1, 32) or max_packets
    queue_num = defaults.queue_num
    if "queue" in known:
        queue = integer_of(known["queue"].value, checker, "'queue'", 0, 65535)
        queue_num = queue if queue is not None else queue_num
    host_queue_rate = defaults.host_queue_rate
    if "host_queue_rate" in known:
        rate = integer_of(known["host_queue_rate"].value, checker, "'host_queue_rate'", 0, MAX_HOST_QUEUE_RATE)
        host_queue_rate = rate if rate is not None else host_queue_rate
    return ClassifierSettings(fail_mode, max_packets, queue_num, host_queue_rate=host_queue_rate)


def with_tcp_only(settings: ClassifierSettings, node: Node | None, checker: Checker,
                  applications: dict[str, Application]) -> ClassifierSettings:
    """tcp_only names apps, so it is read once the applications are known."""
    if node is None or not isinstance(node, MappingNode):
        return settings
    for key_node, value_node in node.value:
        if isinstance(key_node, ScalarNode) and key_node.value == "tcp_only":
            return dataclasses.replace(settings, tcp_only=read_tcp_only(value_node, checker, applications))
    return settings


def classifier_schema() -> Schema:
    return object_schema(
        "Application classifier settings.",
        {
            "fail_mode": {"enum": list(FAIL_MODES), "description": "New flows when the classifier is down."},
            "max_packets": {
                "type": "integer", "minimum": 1, "maximum": 32, "description": "Packets inspected per flow.",
            },
            "queue": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "NFQUEUE number."},
            "host_queue_rate": {
                "type": "integer", "minimum": 0, "maximum": MAX_HOST_QUEUE_RATE,
                "description": "Packets per second one LAN host may have queued to the classifier "
                               "(above it they pass unclassified); 0: no limit.",
            },
            "tcp_only": one_or_list(
                string_schema("An application id or a category."),
                "Apps/categories whose QUIC (UDP) is blocked so browsers fall back to TLS over TCP.",
            ),
        },
    )
