"""The `tunnels` section: site-to-site tunnels (WireGuard) whose business traffic stays first.

    tunnels:
      branch1:
        interface: wg0                 # set up the usual way (wg-quick, systemd-networkd)
        networks: [203.0.113.128/26]   # the branch networks behind it
        over: fibre                    # the WAN link that carries it ("wan" with interfaces.wan)
        share: 50%                     # of that link's upload: the tunnel device's own HTB tree
        port: 51820                    # UDP port of the outer flow (WireGuard's ListenPort)
        class: tunnel                  # the outer flow's class on the WAN link's tree

WireGuard clears the packet mark and copies no DSCP to the outer packet, so
the WAN's tree cannot tell ERP from bulk inside the tunnel. gatewayd therefore
classifies the inner packets like office traffic (the tunnel counts as an
office port) and shapes them on the tunnel device, at the tunnel's share, with
the policy's classes; the outer UDP flow goes into one class on the WAN (give
it a guarantee of at least the share, and a high priority). The queue then
builds where the classes are visible, and the WAN sees a flow that never
exceeds what it is guaranteed. See README "Branch tunnels" for IPsec.
"""

from __future__ import annotations

from collections.abc import Collection

from gatewayd.policy.fields import (
    INTERFACE_PATTERN,
    SHARE_PATTERN,
    check_interface_name,
    parse_network,
    parse_share,
    suggestion,
)
from gatewayd.policy.model import Tunnel
from gatewayd.policy.named import read_named
from gatewayd.policy.schema_parts import Schema, named_map, object_schema, string_schema
from gatewayd.policy.yamltree import (
    Checker,
    Entry,
    checked_mapping,
    field_at,
    integer_of,
    text_list_of,
    text_of,
)

TUNNEL_KEYS = ("interface", "networks", "over", "share", "port", "class")
REQUIRED_TUNNEL_KEYS = ("interface", "networks", "share", "port", "class")


def read_tunnels(entry: Entry, checker: Checker, links: Collection[str], classes: Collection[str],
                 taken_interfaces: Collection[str]) -> dict[str, Tunnel]:
    """`links`: the links a tunnel may ride (the implicit "wan" without a links section);
    `taken_interfaces`: LAN ports and links' interfaces, which no tunnel may use."""
    return read_named(entry.value, checker, "tunnels", "tunnel",
                      lambda item: _read_tunnel(item, checker, links, classes, taken_interfaces))


def _read_tunnel(entry: Entry, checker: Checker, links: Collection[str], classes: Collection[str],
                 taken_interfaces: Collection[str]) -> Tunnel | None:
    what = f"tunnel '{entry.name}'"
    known = checked_mapping(entry.value, checker, what, TUNNEL_KEYS, REQUIRED_TUNNEL_KEYS, owner=entry.key)
    if known is None:
        return None
    issues_before = len(checker.issues)
    interface = _text(known, "interface", checker, what)
    if interface is not None:
        interface = field_at(checker, known["interface"].value, check_interface_name, interface)
        if interface in taken_interfaces:
            checker.report(known["interface"].value,
                           f"interface '{interface}' of {what} is already a LAN port or a WAN link")
    networks = []
    for item, text in text_list_of(known["networks"].value, checker, f"'networks' of {what}") \
            if "networks" in known else ():
        network = field_at(checker, item, parse_network, text)
        if network is not None:
            networks.append(network)
    over = _reference(known, "over", checker, what, links, "link") if "over" in known else _only_link(
        links, entry, checker, what)
    share_text = _text(known, "share", checker, what)
    share = field_at(checker, known["share"].value, parse_share, share_text) if share_text is not None else None
    if share == 0:
        checker.report(known["share"].value, f"'share' of {what} must be more than 0%")
    port = integer_of(known["port"].value, checker, f"'port' of {what}", 1, 65535) if "port" in known else None
    qos_class = _reference(known, "class", checker, what, classes, "class")
    if (len(checker.issues) > issues_before or interface is None or over is None or share is None
            or port is None or qos_class is None):
        return None
    return Tunnel(entry.name, interface, tuple(networks), over, share, port, qos_class, checker.location(entry.key))


def _text(known: dict[str, Entry], key: str, checker: Checker, what: str) -> str | None:
    return text_of(known[key].value, checker, f"'{key}' of {what}") if key in known else None


def _reference(known: dict[str, Entry], key: str, checker: Checker, what: str, defined: Collection[str],
               kind: str) -> str | None:
    name = _text(known, key, checker, what)
    if name is not None and name not in defined:
        listed = ", ".join(defined) or "none"
        checker.report(known[key].value, f"{kind} '{name}' of {what} is not defined (defined: {listed})"
                                         + suggestion(name, defined))
        return None
    return name


def _only_link(links: Collection[str], entry: Entry, checker: Checker, what: str) -> str | None:
    if len(links) == 1:
        return next(iter(links))
    checker.report(entry.key, f"{what} needs 'over': the link that carries it (one of: {', '.join(links)})")
    return None


def tunnel_schema() -> Schema:
    return named_map("Site-to-site tunnels: inner traffic shaped on the tunnel device, the outer flow in a class.",
                     object_schema("One tunnel.", {
                         "interface": string_schema("The tunnel device (e.g. wg0).", pattern=INTERFACE_PATTERN),
                         "networks": {"type": "array", "items": string_schema("A network behind the tunnel.")},
                         "over": string_schema("The WAN link that carries it (default: the only link)."),
                         "share": string_schema("Its share of that link's upload, e.g. 50%.", pattern=SHARE_PATTERN),
                         "port": {"type": "integer", "minimum": 1, "maximum": 65535,
                                  "description": "UDP port of the outer flow (WireGuard's ListenPort)."},
                         "class": string_schema("The outer flow's class on the WAN link."),
                     }, REQUIRED_TUNNEL_KEYS))

