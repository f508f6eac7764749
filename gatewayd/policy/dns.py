"""The `dns` section: the resolvers the office is told to use.

    dns:
      resolvers: [203.0.113.53, "2001:db8:100::53"]

Left out or empty: the office resolves through the router itself only (a
dnsmasq or unbound on the gateway). Only these resolvers' answers, and those
of the router's own resolver, teach the classifier which app an address
belongs to (compile/dns_rules.py, classify/dns_learning.py): an answer from
any other server teaches nothing. Connection caps do not count DNS (port 53,
UDP and TCP) to these addresses; DNS to any other server counts like any
connection to the Internet.
"""

from __future__ import annotations

import ipaddress

from gatewayd.policy.fields import FieldError
from gatewayd.policy.model import DnsSettings, IPAddress
from gatewayd.policy.schema_parts import Schema
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    is_null,
    text_list_of,
)

DNS_KEYS = ("resolvers",)
MAX_RESOLVERS = 32  # a few per office; the cap exemption is one set lookup whatever the number


def parse_resolver(text: str) -> IPAddress:
    if "/" in text:
        raise FieldError(f"resolver '{text}' is a network; list each resolver's own address")
    try:
        if "%" in text:  # a zone ("fe80::1%eth0") means nothing to the gateway's filters
            raise ValueError(text)
        return ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"resolver '{text}' is not an IPv4/IPv6 address") from None


def read_dns(entry: Entry, checker: Checker) -> DnsSettings:
    location = checker.location(entry.key)
    if is_null(entry.value):
        return DnsSettings(location=location)
    known = checked_mapping(entry.value, checker, "'dns'", DNS_KEYS)
    if known is None or "resolvers" not in known:
        return DnsSettings(location=location)
    resolvers: list[IPAddress] = []
    for node, text in text_list_of(known["resolvers"].value, checker, "'resolvers' of 'dns'"):
        address = field_at(checker, node, parse_resolver, text)
        if address is None:
            continue
        if address in resolvers:
            checker.report(node, f"resolver {address} is listed twice")
        else:
            resolvers.append(address)
    if len(resolvers) > MAX_RESOLVERS:
        checker.report(known["resolvers"].key, f"too many resolvers: {len(resolvers)} (at most {MAX_RESOLVERS})")
    return DnsSettings(tuple(resolvers), location)


def dns_schema() -> Schema:
    properties: Schema = {
        "resolvers": {
            "description": "Addresses of the DNS servers the office is told to use; left out = the router "
                           "itself only. Only their answers (and the router's own resolver's) teach which "
                           "app an address belongs to; connection caps do not count DNS to them.",
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
