"""Ages of recently blocked flows, from `nft -j list set` as the kernel prints it."""

from __future__ import annotations

from typing import Any

from gatewayd.apply.nft import BlockedFlow, blocked_flows

# The kernel reports the timeout on the set; elements added by the rules' `update` have only
# `expires`, an element carried over a reload has its own timeout (the time it had left).
LISTING: list[dict[str, Any]] = [
    {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
    {"set": {"family": "inet", "name": "recent_blocked_v4", "table": "gatewayd",
             "type": ["ipv4_addr", "ipv4_addr", "inet_proto", "inet_service", "mark"],
             "handle": 9, "flags": ["timeout", "dynamic"], "timeout": 600, "size": 4096,
             "elem": [
                 {"elem": {"val": {"concat": ["192.0.2.130", "203.0.113.20", "tcp", 443, 2101248]}, "expires": 597}},
                 {"elem": {"val": {"concat": ["192.0.2.200", "203.0.113.30", "udp", 443, 3149824]}, "expires": 588}},
                 {"elem": {"val": {"concat": ["192.0.2.20", "203.0.113.40", "tcp", 6881, 2097152]},
                           "timeout": 500, "expires": 480}},
                 {"elem": {"val": {"concat": ["192.0.2.21", "203.0.113.41", "tcp", 80, 2097152]}, "expires": 0}},
             ]}},
]


def test_age_is_the_sets_timeout_minus_what_is_left() -> None:
    flows = blocked_flows(LISTING)
    assert [flow.age_seconds for flow in flows] == [3, 12, 120]
    assert flows[0] == BlockedFlow("192.0.2.130", "203.0.113.20", "tcp", 443, 2101248, 597, 3)


def test_elements_without_time_left_or_sets_without_elements_give_nothing() -> None:
    assert all(flow.client != "192.0.2.21" for flow in blocked_flows(LISTING))
    assert blocked_flows([{"set": {"name": "recent_blocked_v6", "timeout": 600}}]) == []
    assert blocked_flows([]) == []
