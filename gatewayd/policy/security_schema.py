"""JSON Schema of the `security` section (policy/schema.py puts it in the policy's schema)."""

from __future__ import annotations

from typing import Any

from gatewayd.policy.security import (
    BINDING_KEYS,
    FLOOD_KEYS,
    LIMIT_KEYS,
    MAC_TEXT,
    MAX_BURST,
    MAX_SCAN_COUNT,
    SCAN_KEYS,
    SECURITY_KEYS,
    UNBOUND_ACTIONS,
)

Schema = dict[str, Any]
DURATION_PATTERN = "^[0-9]+(s|m|h|d)$"
LIMIT_RATE_PATTERN = "^[0-9]+/(second|minute)$"
BOOLEAN: Schema = {"type": "boolean"}


def _object(description: str, properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties,
                      "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _limit(what: str) -> Schema:
    properties = {
        "rate": {"type": "string", "pattern": LIMIT_RATE_PATTERN, "description": "PACKETS/second or PACKETS/minute."},
        "burst": {"type": "integer", "minimum": 1, "maximum": MAX_BURST, "description": "Packets allowed above the rate."},
    }
    assert tuple(properties) == LIMIT_KEYS
    return _object(f"{what} per source address; the excess is dropped.", properties, LIMIT_KEYS)


def security_schema() -> Schema:
    bindings = {
        "hosts": {"type": "object", "description": "ADDRESS: MAC pairs.",
                  "additionalProperties": {"type": "string", "pattern": f"^{MAC_TEXT}$"}},
        "file": {"type": "string", "description": "A file of 'MAC ADDRESS' lines (as /etc/ethers), relative to the policy."},
        "learn": BOOLEAN | {"description": "Also bind the pairs in the neighbour table at start and reload."},
        "unbound": {"enum": list(UNBOUND_ACTIONS), "description": "Frames from addresses bound to nothing."},
    }
    flood = {
        "syn": _limit("TCP SYNs"),
        "udp": _limit("UDP packets"),
        "icmp_echo": _limit("ICMP echo requests"),
        "new_connections": _limit("New connections (conntrack)"),
    }
    count = {"type": "integer", "minimum": 1, "maximum": MAX_SCAN_COUNT}
    duration = {"type": "string", "pattern": DURATION_PATTERN}
    scan = {
        "ports": count | {"description": "More than this many distinct ports in the window is a scan."},
        "hosts": count | {"description": "More than this many distinct hosts in the window is a sweep."},
        "window": duration | {"description": "The window, e.g. 10s (default 10s)."},
        "block_for": duration | {"description": "How long a scanner stays blocked, e.g. 10m (default 10m)."},
        "allow": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                  "description": "Addresses or networks never blocklisted."},
    }
    assert (tuple(bindings), tuple(flood), tuple(scan)) == (BINDING_KEYS, FLOOD_KEYS, SCAN_KEYS)
    properties = {
        "bindings": _object("IP-MAC binding and ARP-spoof defence.", bindings),
        "anti_spoofing": BOOLEAN | {"description": "Drop LAN packets whose source does not route back to the LAN."},
        "flood": _object("Per-source flood limits.", flood),
        "port_scan": _object("Port-scan and host-sweep defence with a timed blocklist.", scan),
        "syn_proxy": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 65535},
                      "description": "TCP ports of services exposed to the WAN: the gateway completes their "
                                     "handshakes itself (SYN proxy), so a SYN flood never reaches the server."},
    }
    assert tuple(properties) == SECURITY_KEYS
    return _object("The LAN guard: all of it kernel rules.", properties)
