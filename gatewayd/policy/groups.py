"""The `groups` section: departments by network, range, address or MAC, with their QoS.

The members are read here; the group's `bandwidth`, `per_host`, `exceptions`
and `max_connections` by policy/bandwidth.py.
"""

from __future__ import annotations

from dataclasses import replace

from yaml.nodes import Node

from gatewayd.policy.bandwidth import (
    GROUP_QOS_KEYS,
    MAX_CONNECTIONS,
    rates_schema,
    read_group_qos,
)
from gatewayd.policy.fields import parse_member
from gatewayd.policy.model import AddressRange, Group
from gatewayd.policy.named import read_named
from gatewayd.policy.schema_parts import (
    Schema,
    object_schema,
    one_or_list,
    string_schema,
)
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    is_empty,
    text_list_of,
    text_of,
)

GROUP_KEYS = ("description", "members", *GROUP_QOS_KEYS)
MAX_GROUPS = 60  # the ct mark's 6-bit group field, less its reserved values


def read_groups(node: Node, checker: Checker) -> dict[str, Group]:
    return read_named(node, checker, "groups", "group", lambda entry: _read_group(entry, checker), MAX_GROUPS)


def _read_group(entry: Entry, checker: Checker) -> Group | None:
    what = f"group '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, GROUP_KEYS, required=("members",), owner=entry.key)
    if known is None:
        return None
    description = ""
    if "description" in known:
        description = text_of(known["description"].value, checker, f"'description' of {what}") or ""
    if "members" not in known:
        return None
    issues_before = len(checker.issues)
    members = text_list_of(known["members"].value, checker, f"'members' of {what}")
    if is_empty(known["members"].value):
        checker.report(
            known["members"].value, f"'members' of {what} is empty (expected addresses, networks, ranges or MACs)"
        )
    networks, ranges, macs = [], [], []
    for item, text in members:
        member = field_at(checker, item, parse_member, text)
        if isinstance(member, AddressRange):
            ranges.append(member)
        elif isinstance(member, str):
            macs.append(member)
        elif member is not None:
            networks.append(member)
    if len(checker.issues) > issues_before:
        return None
    group = Group(
        entry.name, tuple(networks), tuple(ranges), tuple(macs), description, checker.location(entry.key)
    )
    qos = read_group_qos(known, checker, what, group)
    if len(checker.issues) > issues_before:
        return None
    return replace(group, qos=qos)


def group_schema() -> Schema:
    return object_schema(
        "A department: a set of client hosts.",
        {
            "description": string_schema("Free text for people."),
            "members": one_or_list(
                string_schema("IPv4/IPv6 network (no host bits), address, range a-b, or MAC."),
                "The group's hosts.",
            ),
            "bandwidth": rates_schema("Guarantee and ceiling shared by the whole group; its classes split it."),
            "per_host": rates_schema("Each host's own minimum and maximum (one queue per address)."),
            "exceptions": {
                "type": "object",
                "description": "Hosts (by address) whose per-host rates differ.",
                "additionalProperties": rates_schema("This host's rates; what is left out comes from per_host."),
            },
            "max_connections": {
                "type": "integer", "minimum": 1, "maximum": MAX_CONNECTIONS,
                "description": "Concurrent connections per host to the Internet; more are refused (TCP reset) "
                               "and counted. DNS to dns.resolvers, ICMP and traffic to the router do not count.",
            },
        },
        ("members",),
    )
