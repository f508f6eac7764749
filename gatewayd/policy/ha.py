"""The `ha` section: two gateways, one office, on keepalived (VRRP) and conntrackd.

    ha:
      nodes:                                   # exactly two; each box finds itself by name
        gw-a: { priority: 254, sync_address: 203.0.113.241 }
        gw-b: { priority: 253, sync_address: 203.0.113.242 }
      sync_interface: sync0                    # the dedicated link between the two boxes
      virtual_addresses:                       # move to whichever box is master
        lan: [192.0.2.1/24, "2001:db8:1::1/64"]   # the office's default gateway; with IPv6, also
                                               # fe80::1/64 unless a link-local one is listed
        wan: [198.51.100.1/24]
      router_id: 51                            # VRRP id of the LAN instance; WAN uses 52
      advert_interval: 1s                      # e.g. 1s, 200ms; takeover after about 3 of them
      preempt: off                             # default; or a delay (300s): a returning box
                                               # takes the office back only after it

Priorities near the top take over sooner: a backup declares the master dead after
three adverts plus (256 - its priority)/256 of one (RFC 5798's skew), 0.01 s at 253
but 0.61 s at 100.

IPv6 hosts learn their default router from Router Advertisements, as the RA's
source: a link-local address. Each box's own link-local differs, so after a
failover hosts would keep routing to the dead box for the router lifetime. A LAN
with an IPv6 virtual address therefore also moves a link-local one (fe80::1/64
unless the admin lists one), and compile/ha.py renders a radvd.conf that sends
RAs only from it: only the master, which holds it, advertises.

Both boxes run the same policy file (gatewayd reports when their content
differs); compile/ha.py turns this section into each node's keepalived.conf
and conntrackd.conf. Without preemption a box that comes back stays backup,
so a flapping box cannot move the office back and forth.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from yaml.nodes import Node

from gatewayd.policy.fields import NAME_PATTERN, FieldError, check_interface_name, check_name
from gatewayd.policy.model import HaNode, HaPair, Interfaces, IPAddress, IPInterface
from gatewayd.policy.schema_parts import Schema, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    is_empty,
    mapping_entries,
    text_list_of,
    text_of,
)

HA_KEYS = ("nodes", "sync_interface", "virtual_addresses", "router_id", "advert_interval", "preempt")
REQUIRED_HA_KEYS = ("nodes", "sync_interface", "virtual_addresses")
NODE_KEYS = ("priority", "sync_address")
SIDES = ("lan", "wan")
NODE_COUNT = 2  # keepalived and conntrackd's primary-backup setup: one master, one backup
MIN_PRIORITY, MAX_PRIORITY = 1, 254  # 255 is VRRP's "address owner", which a moving address never is
MAX_ROUTER_ID = 254  # VRRP ids are 1..255 and the WAN instance takes router_id + 1
DEFAULT_ROUTER_ID = 51
MAX_VIRTUAL_ADDRESSES = 16  # per side: a gateway has a few; keepalived sends each in every advert
# The LAN's router address for IPv6 hosts (RAs come from it) when the admin lists no link-local one.
DEFAULT_LAN_LINK_LOCAL = ipaddress.IPv6Interface("fe80::1/64")
# VRRPv3 counts the interval in centiseconds, 12 bits (RFC 5798): 10 ms to 40.95 s.
MIN_ADVERT_CENTISECONDS, MAX_ADVERT_CENTISECONDS = 1, 4095
DEFAULT_ADVERT_CENTISECONDS = 100
MAX_PREEMPT_DELAY_SECONDS = 1000  # keepalived's own limit for preempt_delay
ADVERT_PATTERN = r"^[0-9]{1,6}(ms|s)$"
PREEMPT_PATTERN = r"^(off|on|[0-9]{1,4}(s|m))$"
PREEMPT_OFF_WORDS = ("off", "false", "no")
PREEMPT_ON_WORDS = ("on", "true", "yes")


def parse_sync_address(text: str) -> IPAddress:
    if "/" in text:
        raise FieldError(f"sync address '{text}' must be the box's own address alone, without a prefix length")
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise FieldError(f"sync address '{text}' is not an IPv4/IPv6 address") from None
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        raise FieldError(f"sync address {address} is not a unicast address of this box")
    return address


def parse_virtual_address(text: str) -> IPInterface:
    """ADDRESS/PREFIX: keepalived adds it to the interface like `ip address add`, so the prefix matters."""
    if "/" not in text:
        raise FieldError(f"virtual address '{text}' needs its prefix length (e.g. 192.0.2.1/24)")
    try:
        interface = ipaddress.ip_interface(text)
    except ValueError:
        raise FieldError(f"virtual address '{text}' is not ADDRESS/PREFIX (e.g. 192.0.2.1/24)") from None
    if interface.ip == interface.network.network_address and interface.network.num_addresses > 2:
        raise FieldError(f"virtual address '{text}' is a network, not an address in it")
    return interface


def parse_advert_interval(text: str) -> int:
    """The interval in centiseconds, VRRPv3's unit."""
    match = re.fullmatch(ADVERT_PATTERN.strip("^$"), text)
    if not match:
        raise FieldError(f"advert interval '{text}' is not valid (expected e.g. 1s or 200ms)")
    milliseconds = int(text[:-2]) if text.endswith("ms") else int(text[:-1]) * 1000
    if milliseconds % 10:
        raise FieldError(f"advert interval '{text}' is not a multiple of 10ms (VRRP counts centiseconds)")
    centiseconds = milliseconds // 10
    if not MIN_ADVERT_CENTISECONDS <= centiseconds <= MAX_ADVERT_CENTISECONDS:
        raise FieldError(f"advert interval '{text}' is out of range (expected 10ms to 40950ms)")
    return centiseconds


def parse_preempt(text: str) -> int | None:
    """None = never take over by itself; otherwise the delay in seconds before a returning node does."""
    lowered = text.lower()
    if lowered in PREEMPT_OFF_WORDS:
        return None
    if lowered in PREEMPT_ON_WORDS:
        return 0
    match = re.fullmatch(r"([0-9]{1,4})(s|m)", lowered)
    if not match:
        raise FieldError(f"preempt '{text}' is not valid (expected off, on, or a delay such as 300s or 5m)")
    seconds = int(match.group(1)) * (60 if match.group(2) == "m" else 1)
    if seconds > MAX_PREEMPT_DELAY_SECONDS:
        raise FieldError(f"preempt delay '{text}' is out of range (at most {MAX_PREEMPT_DELAY_SECONDS}s, "
                         "keepalived's limit)")
    return seconds


def read_ha(entry: Entry, checker: Checker, interfaces: Interfaces | None) -> HaPair | None:
    known = checked_mapping(entry.value, checker, "'ha'", HA_KEYS, REQUIRED_HA_KEYS, mapping=entry.key)
    if known is None:
        return None
    nodes = _read_nodes(known["nodes"], checker) if "nodes" in known else None
    sync_interface = _read_sync_interface(known, checker, interfaces)
    lan, wan = _read_virtual_addresses(known["virtual_addresses"], checker) if "virtual_addresses" in known \
        else ((), ())
    router_id = DEFAULT_ROUTER_ID
    if "router_id" in known:
        router_id = integer_of(known["router_id"].value, checker, "'router_id' of 'ha'", 1, MAX_ROUTER_ID) \
            or router_id
    advert = _scalar_field(known, "advert_interval", checker, parse_advert_interval)
    preempt = _scalar_field(known, "preempt", checker, parse_preempt)
    if nodes is not None:
        _check_sync_addresses_are_not_virtual(nodes, lan + wan, checker, known["nodes"].value)
    if nodes is None or sync_interface is None or not lan:
        return None
    return HaPair(
        nodes=nodes,
        sync_interface=sync_interface,
        lan_addresses=lan,
        wan_addresses=wan,
        router_id=router_id,
        advert_centiseconds=DEFAULT_ADVERT_CENTISECONDS if advert is None else advert,
        preempt_delay_seconds=preempt,
        location=checker.location(entry.key),
    )


def _scalar_field(
    known: dict[str, Entry], key: str, checker: Checker, parse: Callable[[str], int | None],
) -> int | None:
    """Like yamltree.field_at, for parsers whose None is a valid answer (preempt: off)."""
    if key not in known:
        return None
    node = known[key].value
    text = text_of(node, checker, f"'{key}' of 'ha'")
    if text is None:
        return None
    try:
        return parse(text)
    except FieldError as error:
        checker.report(node, str(error))
        return None


def _read_nodes(entry: Entry, checker: Checker) -> tuple[HaNode, HaNode] | None:
    entries = mapping_entries(entry.value, checker, "'nodes' of 'ha'")
    if entries is None:
        return None
    if len(entries) != NODE_COUNT:
        checker.report(entry.key, f"'nodes' of 'ha' names {len(entries)} node(s) (expected exactly {NODE_COUNT}: "
                                  "this box and its peer)")
        return None
    nodes = [node for node in (_read_node(item, checker) for item in entries) if node is not None]
    if len(nodes) != NODE_COUNT:
        return None
    first, second = nodes
    if first.priority == second.priority:
        checker.report(entries[1].key, f"nodes '{first.name}' and '{second.name}' have the same priority "
                                       f"{first.priority} (give the preferred master the higher one)")
    if first.sync_address == second.sync_address:
        checker.report(entries[1].key, f"nodes '{first.name}' and '{second.name}' have the same sync address "
                                       f"{first.sync_address}")
    elif first.sync_address.version != second.sync_address.version:
        checker.report(entries[1].key, "the two sync addresses must both be IPv4 or both IPv6 "
                                       "(conntrackd talks one family on the sync link)")
    return first, second


def _read_node(entry: Entry, checker: Checker) -> HaNode | None:
    what = f"node '{entry.name}' of 'ha'"
    name = field_at(checker, entry.key, lambda text: check_name(text, "node name"), entry.name)
    known = checked_mapping(entry.value, checker, what, NODE_KEYS, NODE_KEYS, mapping=entry.key)
    if known is None or name is None:
        return None
    priority = integer_of(known["priority"].value, checker, f"'priority' of {what}", MIN_PRIORITY, MAX_PRIORITY) \
        if "priority" in known else None
    address = None
    if "sync_address" in known and (text := text_of(known["sync_address"].value, checker, f"'sync_address' of {what}")):
        address = field_at(checker, known["sync_address"].value, parse_sync_address, text)
    if priority is None or address is None:
        return None
    return HaNode(name, priority, address, checker.location(entry.key))


def _read_sync_interface(known: dict[str, Entry], checker: Checker, interfaces: Interfaces | None) -> str | None:
    if "sync_interface" not in known:
        return None
    node = known["sync_interface"].value
    text = text_of(node, checker, "'sync_interface' of 'ha'")
    name = field_at(checker, node, check_interface_name, text) if text is not None else None
    if name is not None and interfaces is not None and name in (*interfaces.lan, interfaces.wan):
        checker.report(node, f"sync interface '{name}' is also a LAN or WAN port (the sync link must be "
                             "its own: office traffic would delay the state updates)")
        return None
    return name


def _read_virtual_addresses(
    entry: Entry, checker: Checker,
) -> tuple[tuple[IPInterface, ...], tuple[IPInterface, ...]]:
    known = checked_mapping(entry.value, checker, "'virtual_addresses' of 'ha'", SIDES, ("lan",), mapping=entry.key)
    if known is None:
        return (), ()
    sides: dict[str, list[IPInterface]] = {side: [] for side in SIDES}
    seen: set[IPAddress] = set()
    for side in SIDES:
        if side not in known:
            continue
        what = f"'{side}' of 'virtual_addresses'"
        if side == "lan" and is_empty(known[side].value):
            checker.report(known[side].key, f"{what} is empty (the office needs its default gateway address)")
        for item, text in text_list_of(known[side].value, checker, what, MAX_VIRTUAL_ADDRESSES):
            address = field_at(checker, item, parse_virtual_address, text)
            if address is None:
                continue
            if address.ip in seen:
                checker.report(item, f"virtual address {address.ip} is listed twice")
                continue
            if address.ip.is_link_local and address.version == 6 and side == "lan" \
                    and any(listed.ip.is_link_local for listed in sides[side] if listed.version == 6):
                checker.report(item, f"a second link-local virtual address {address.ip} (the LAN has one: "
                                     "the source of the router advertisements)")
                continue
            seen.add(address.ip)
            sides[side].append(address)
    return _with_lan_link_local(tuple(sides["lan"])), tuple(sides["wan"])


def _with_lan_link_local(lan: tuple[IPInterface, ...]) -> tuple[IPInterface, ...]:
    """The LAN's IPv6 addresses with a link-local one first (fe80::1/64 unless listed): IPv6 hosts
    route to the RA's link-local source, so that address must move with the master too."""
    ipv6 = [address for address in lan if address.version == 6]
    if not ipv6:
        return lan
    link_local = [address for address in ipv6 if address.ip.is_link_local] or [DEFAULT_LAN_LINK_LOCAL]
    ipv6_in_order = (*link_local, *(address for address in ipv6 if not address.ip.is_link_local))
    ipv4 = tuple(address for address in lan if address.version == 4)
    # The first address's family is the one keepalived advertises (compile/ha.py): keep it first.
    return (*ipv6_in_order, *ipv4) if lan[0].version == 6 else (*ipv4, *ipv6_in_order)


def _check_sync_addresses_are_not_virtual(
    nodes: tuple[HaNode, HaNode], virtual: tuple[IPInterface, ...], checker: Checker, at: Node,
) -> None:
    moving = {address.ip for address in virtual}
    for node in nodes:
        if node.sync_address in moving:
            checker.report(at, f"sync address {node.sync_address} of node '{node.name}' is also a virtual "
                               "address (each box keeps its own sync address)")


def ha_schema() -> Schema:
    address_list = {"type": "array", "maxItems": MAX_VIRTUAL_ADDRESSES,
                    "items": string_schema("ADDRESS/PREFIX, e.g. 192.0.2.1/24.")}
    node = object_schema("One box of the pair.", {
        "priority": {"type": "integer", "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY,
                     "description": "VRRP priority; the higher one is master when both start."},
        "sync_address": string_schema("This box's own address on the sync link."),
    }, NODE_KEYS)
    properties: Schema = {
        "nodes": {"type": "object", "description": "Exactly two boxes, by name; each finds itself by name.",
                  "minProperties": NODE_COUNT, "maxProperties": NODE_COUNT,
                  "propertyNames": {"pattern": NAME_PATTERN}, "additionalProperties": node},
        "sync_interface": string_schema("The dedicated link between the boxes (conntrackd, gatewayd sync)."),
        "virtual_addresses": object_schema("Addresses that move to the master.", {
            "lan": address_list | {"description": "The office's default gateway (IPv4 and/or IPv6); with IPv6, "
                                                  "also fe80::1/64 (the RAs' source) unless a link-local "
                                                  "address is listed."},
            "wan": address_list | {"description": "The WAN side's addresses."},
        }, ("lan",)),
        "router_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROUTER_ID,
                      "description": f"VRRP id of the LAN instance (default {DEFAULT_ROUTER_ID}); WAN uses +1."},
        "advert_interval": string_schema("VRRP advertisement interval, e.g. 1s or 200ms (default 1s).",
                                         pattern=ADVERT_PATTERN),
        "preempt": string_schema("off (default): a returning box stays backup; on, or a delay such as 300s.",
                                 pattern=PREEMPT_PATTERN),
    }
    assert tuple(properties) == HA_KEYS
    return object_schema("Two gateways, one office: keepalived (VRRP) and conntrackd.", properties,
                         REQUIRED_HA_KEYS)

