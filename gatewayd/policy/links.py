"""The `links` section: the office's Internet lines, balanced per connection and failed over.

    links:
      fibre:                         # names are what metrics, status and pins use
        interface: wan1
        gateway: 198.51.100.2        # IPv4 next hop; leave out for point-to-point links (PPPoE)
        gateway6: fe80::1            # IPv6 next hop (link-local is fine); without it IPv6 does not use this line
        upload: 20mbit
        download: 100mbit
        weight: 3                    # new connections: 3 of every 4 while both lines are up
        probe:
          icmp: [203.0.113.53]
          tcp: ["203.0.113.80:443"]
          dns: [203.0.113.53]
          interval: 500ms            # one round to every target
          timeout: 500ms             # at most the interval
          fall: 3                    # bad rounds in a row: down (worst case interval + fall x interval)
          rise: 5                    # good rounds in a row: up again
          max_loss: 20%              # over the last rounds: above this counts as down
          max_latency: 150ms
      cheap: { interface: wan2, gateway: 198.51.100.18, upload: 10mbit, download: 50mbit }

A policy without this section keeps `interfaces: {wan, upload, download}`: one
implicit link, no routing or probing by gatewayd. With it, `interfaces` names
only the LAN ports. IPv6 connections are balanced over the links with a
`gateway6` only (an office whose second ISP gives no IPv6 still works), and
IPv6 probe targets need one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from yaml.nodes import Node

from gatewayd.policy.fields import (
    DURATION_PATTERN,
    INTERFACE_PATTERN,
    RATE_PATTERN,
    FieldError,
    check_interface_name,
    parse_duration_ms,
    parse_rate,
    parse_share,
)
from gatewayd.policy.model import IPAddress, LinkProbe, WanLink
from gatewayd.policy.named import read_named
from gatewayd.policy.schema_parts import Schema, named_map, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    is_empty,
    text_list_of,
    text_of,
)

MAX_LINKS = 7  # the ct mark's 3-bit link field (compile/marks.py), less "no link"
LINK_KEYS = ("interface", "gateway", "gateway6", "upload", "download", "weight", "probe")
REQUIRED_LINK_KEYS = ("interface", "upload", "download")
PROBE_TARGET_KEYS = ("icmp", "tcp", "dns")
PROBE_KEYS = (*PROBE_TARGET_KEYS, "interval", "timeout", "fall", "rise", "max_loss", "max_latency")
MAX_WEIGHT = 100
DEFAULT_PROBE = LinkProbe()
Parser = Callable[[str], Any]  # a fields.py-style parser: text -> value, or FieldError


def read_links(entry: Entry, checker: Checker, lan: tuple[str, ...]) -> dict[str, WanLink]:
    interfaces: list[tuple[str, str, Node]] = []  # (link, interface, where): checked even if the link has errors
    links = read_named(entry.value, checker, "links", "link",
                       lambda item: _read_link(item, checker, interfaces), MAX_LINKS)
    if not links and not checker.issues:
        checker.report(entry.key, "'links' lists no link (leave the section out for a single WAN in 'interfaces')")
    owner: dict[str, tuple[str, Node]] = {}
    for link, interface, node in interfaces:
        if interface in lan:
            checker.report(node, f"interface '{interface}' of link '{link}' is a LAN port")
        first, first_node = owner.setdefault(interface, (link, node))
        if first != link:
            checker.report(node, f"links '{first}' (line {first_node.start_mark.line + 1}) and '{link}' are both on "
                                 f"interface '{interface}' (one link per interface)")
    return links


def _read_link(entry: Entry, checker: Checker, interfaces: list[tuple[str, str, Node]]) -> WanLink | None:
    what = f"link '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, LINK_KEYS, REQUIRED_LINK_KEYS, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    interface = _field(known, "interface", checker, what, check_interface_name)
    if interface is not None:
        interfaces.append((entry.name, interface, known["interface"].value))
    gateway = _field(known, "gateway", checker, what, _parse_gateway)
    gateway6 = _field(known, "gateway6", checker, what, _parse_gateway6)
    upload = _field(known, "upload", checker, what, parse_rate)
    download = _field(known, "download", checker, what, parse_rate)
    weight = (integer_of(known["weight"].value, checker, f"'weight' of {what}", 1, MAX_WEIGHT)
              if "weight" in known else 1)
    probe = _read_probe(known["probe"], checker, what) if "probe" in known else None
    if probe is not None and gateway6 is None and "gateway6" not in known:
        _report_ipv6_targets(known["probe"], probe, checker, what)
    if len(checker.issues) > issues_before or interface is None or upload is None or download is None or weight is None:
        return None
    return WanLink(entry.name, interface, upload, download, weight, gateway, probe, checker.location(entry.key),
                   gateway6=gateway6)


def _report_ipv6_targets(entry: Entry, probe: LinkProbe, checker: Checker, what: str) -> None:
    """An IPv6 probe target on a link without `gateway6` could never answer: the link has no IPv6 route."""
    v6 = [str(a) for a in (*probe.icmp, *(address for address, _ in probe.tcp), *probe.dns) if a.version == 6]
    if v6:
        checker.report(entry.key, f"'probe' of {what} has IPv6 target {v6[0]} but the link has no 'gateway6' "
                                  f"(give the link's IPv6 next hop, or probe IPv4 targets only)")


def _field(known: dict[str, Entry], key: str, checker: Checker, what: str, parse: Parser) -> Any:
    if key not in known:
        return None
    node = known[key].value
    text = text_of(node, checker, f"'{key}' of {what}")
    return field_at(checker, node, parse, text) if text is not None else None


def _parse_gateway(text: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"gateway '{text}' is not an IPv4 address (the next hop on the link)") from None
    if address.version == 6:
        raise FieldError(f"gateway '{text}' is an IPv6 address: put the IPv6 next hop in 'gateway6'")
    return address


def _parse_gateway6(text: str) -> IPAddress:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"gateway6 '{text}' is not an IPv6 address (the IPv6 next hop on the link)") from None
    if address.version == 4:
        raise FieldError(f"gateway6 '{text}' is an IPv4 address: put the IPv4 next hop in 'gateway'")
    if address.is_multicast or address.is_unspecified:
        raise FieldError(f"gateway6 '{text}' cannot be a next hop (multicast or unspecified)")
    return address


def _parse_address(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"probe target '{text}' is not an IPv4/IPv6 address") from None


def _parse_address_port(text: str) -> tuple[IPAddress, int]:
    host, _, port_text = text.rpartition(":")
    try:
        address = ipaddress.ip_address(host.strip("[]"))
        port = int(port_text)
    except ValueError:
        raise FieldError(f"tcp probe target '{text}' is not ADDRESS:PORT (e.g. 203.0.113.80:443)") from None
    if not 0 < port < 65536:
        raise FieldError(f"tcp probe target '{text}' has port {port}, out of range (1 to 65535)")
    return address, port


def _read_probe(entry: Entry, checker: Checker, link_what: str) -> LinkProbe | None:
    what = f"'probe' of {link_what}"
    known = checked_mapping(entry.value, checker, what, PROBE_KEYS, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    icmp = _targets(known, "icmp", checker, what, _parse_address)
    tcp = _targets(known, "tcp", checker, what, _parse_address_port)
    dns = _targets(known, "dns", checker, what, _parse_address)
    if not any(key in known for key in PROBE_TARGET_KEYS):
        checker.report(entry.key, f"{what} has no target (give icmp, tcp or dns targets, e.g. icmp: [203.0.113.53])")
    interval = _field(known, "interval", checker, what, parse_duration_ms) or DEFAULT_PROBE.interval_ms
    timeout = _field(known, "timeout", checker, what, parse_duration_ms) or min(DEFAULT_PROBE.timeout_ms, interval)
    if timeout > interval:
        checker.report(known["timeout"].value, f"'timeout' of {what} ({timeout}ms) is longer than its interval "
                                               f"({interval}ms): a round must end before the next starts")
    fall = (integer_of(known["fall"].value, checker, f"'fall' of {what}", 1, 100)
            if "fall" in known else DEFAULT_PROBE.fall)
    rise = (integer_of(known["rise"].value, checker, f"'rise' of {what}", 1, 100)
            if "rise" in known else DEFAULT_PROBE.rise)
    max_loss = _field(known, "max_loss", checker, what, parse_share)
    max_latency = _field(known, "max_latency", checker, what, parse_duration_ms)
    if len(checker.issues) > issues_before or fall is None or rise is None:
        return None
    return LinkProbe(tuple(icmp), tuple(tcp), tuple(dns), interval, timeout, fall, rise, max_loss, max_latency)


def _targets(known: dict[str, Entry], key: str, checker: Checker, what: str, parse: Parser) -> list[Any]:
    if key not in known:
        return []
    node = known[key].value
    items = text_list_of(node, checker, f"'{key}' of {what}")
    if is_empty(node):
        checker.report(node, f"'{key}' of {what} has no target (expected an address, or a list of them)")
    parsed = [field_at(checker, item, parse, text) for item, text in items]
    return [value for value in parsed if value is not None]


def link_schema() -> Schema:
    rate = string_schema("Rate: a number with bit, kbit, mbit or gbit (SI units).", pattern=RATE_PATTERN)
    duration = string_schema("A duration, e.g. 500ms or 2s.", pattern=DURATION_PATTERN)
    addresses = {"type": "array", "items": string_schema("An IPv4/IPv6 address.")}
    probe = object_schema("Health probes sent over this link only.", {
        "icmp": addresses | {"description": "Echo request targets."},
        "tcp": {"type": "array", "items": string_schema("ADDRESS:PORT; connected or refused both count as an answer.")},
        "dns": addresses | {"description": "DNS servers; any answer counts."},
        "interval": duration | {"description": "Time between rounds (default 500ms)."},
        "timeout": duration | {"description": "Answer deadline, at most the interval (default 500ms)."},
        "fall": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Bad rounds in a row: down."},
        "rise": {"type": "integer", "minimum": 1, "maximum": 100, "description": "Good rounds in a row: up."},
        "max_loss": string_schema("Loss above this share of recent rounds counts as down, e.g. 20%."),
        "max_latency": duration | {"description": "Mean RTT of recent rounds above this counts as down."},
    })
    link = object_schema("One Internet line.", {
        "interface": string_schema("Its WAN interface.", pattern=INTERFACE_PATTERN),
        "gateway": string_schema("IPv4 next hop address (leave out for point-to-point links)."),
        "gateway6": string_schema("IPv6 next hop address, link-local allowed (leave out: no IPv6 over this link)."),
        "upload": rate | {"description": "Line egress rate."},
        "download": rate | {"description": "Line ingress rate."},
        "weight": {"type": "integer", "minimum": 1, "maximum": MAX_WEIGHT,
                   "description": "Share of new connections (default 1)."},
        "probe": probe,
    }, REQUIRED_LINK_KEYS)
    return named_map("Internet lines, balanced per connection and failed over (replaces interfaces.wan).",
                     link, MAX_LINKS)

