"""The `health` section: what `gatewayd apply --confirm-within` checks after a change.

    health:
      dns: { server: 203.0.113.53, name: erp.example.com }   # this name must resolve
      probes: ["203.0.113.20:443", "[2001:db8:100::20]:443"] # these must accept TCP

Forwarding (ip_forward on, interfaces up) is always checked; DNS and probes
only as configured, so gatewayd never sends traffic the admin did not name.
"""

from __future__ import annotations

import ipaddress

from yaml.nodes import Node

from gatewayd.policy.fields import FieldError, parse_domain
from gatewayd.policy.model import HealthChecks
from gatewayd.policy.schema_parts import Schema, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    check_keys,
    checked_mapping,
    field_at,
    mapping_entries,
    text_list_of,
    text_of,
)

HEALTH_KEYS = ("dns", "probes")
DNS_KEYS = ("server", "name")


def parse_probe(text: str) -> tuple[str, int]:
    host, _, port_text = text.rpartition(":")
    host = host.strip("[]")
    try:
        address = ipaddress.ip_address(host)
        port = int(port_text)
    except ValueError:
        raise FieldError(f"probe '{text}' is not ADDRESS:PORT (e.g. 203.0.113.20:443 or [2001:db8::1]:443)") from None
    if not 0 < port < 65536:
        raise FieldError(f"probe '{text}' has port {port}, out of range (1 to 65535)")
    return str(address), port


def parse_server(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise FieldError(f"DNS server '{text}' is not an IPv4/IPv6 address") from None


def read_health(entry: Entry, checker: Checker) -> HealthChecks | None:
    known = checked_mapping(entry.value, checker, "health", HEALTH_KEYS)
    if known is None:
        return None
    server = name = None
    if "dns" in known:
        dns_node: Node = known["dns"].value
        dns_entries = mapping_entries(dns_node, checker, "health.dns")
        if dns_entries is not None:
            dns = check_keys(dns_entries, checker, "health.dns", DNS_KEYS, DNS_KEYS, mapping=dns_node)
            if "server" in dns and (text := text_of(dns["server"].value, checker, "health.dns.server")):
                server = field_at(checker, dns["server"].value, parse_server, text)
            if "name" in dns and (text := text_of(dns["name"].value, checker, "health.dns.name")):
                name = field_at(checker, dns["name"].value, parse_domain, text)
    probes = []
    if "probes" in known:
        for node, text in text_list_of(known["probes"].value, checker, "health.probes"):
            probe = field_at(checker, node, parse_probe, text)
            if probe is not None:
                probes.append(probe)
    return HealthChecks(server, name, tuple(probes))


def health_schema() -> Schema:
    return object_schema(
        "Checks run after `gatewayd apply`; a failing check reverts the change.",
        {
            "dns": object_schema("A name that must resolve.", {
                "server": string_schema("DNS server address."), "name": string_schema("Name to resolve."),
            }) | {"required": ["server", "name"]},
            "probes": {"type": "array", "items": string_schema('"ADDRESS:PORT" that must accept TCP.'),
                       "description": "TCP services that must answer."},
        },
    )
