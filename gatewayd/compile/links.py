"""Several WAN links: the chains, routes and NAT that put each connection on one line for life.

Only for a policy with a `links:` section; a one-WAN policy gets none of this.

Packet path (chains of `inet gatewayd`):

  link_route (prerouting, priority mangle -150: before the routing decision)
      1. a new office connection with no link yet jumps to link_choose:
           - with app pins, its group and app are decided here from the addresses
             the kernel knows (catalog, DNS-learned), the same lookups the
             classify chain makes, so an app is pinned on its first packet;
           - the first matching pin goes to its chain link_pin_N, which picks
             the first up link of the pin's list;
           - else link_balance: `numgen random` over the up links' weights;
           - set_link_K writes link K into the ct mark (marks.LINK_MASK).
      2. a new connection arriving on link K's interface (a port forward)
         is put on link K, so its replies leave where it came in;
      3. every packet from the office whose connection has a link gets that
         link in its packet mark; `ip rule fwmark` sends it to the link's
         routing table (LinkRoute below, applied by apply/links.py).
  link_nat (postrouting, srcnat): office connections are masqueraded on the
      link they leave by, IPv4 and IPv6 alike (the inet table's masquerade
      takes the link's own address of the packet's family).

IPv6: a link with `gateway6` gets an `ip -6 rule` and an IPv6 default route in
the same table number; IPv6 connections are balanced over those links only
(link_balance_v6), and a pin's IPv6 connections skip its links without one.
Masquerade rather than NPTv6: an office with two ISPs has two delegated
prefixes, and NPTv6 would need every office host numbered from a prefix of
its own that gatewayd maps 1:1 onto each ISP's; masquerade needs nothing of
the LAN's addressing, keeps the same conntrack-based stickiness and failover
as IPv4, and is what small multi-WAN routers do. Its cost (no inbound
connections to office hosts through the lines' IPv6) is the same as IPv4's.

link_balance and link_pin_N are the only chains whose contents depend on
which links are up: failover and failback replace exactly these chains in one
nft transaction (choice_script), and apply/links.py ends the failed link's
connections by their link bits in the ct mark.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.compile import marks
from gatewayd.compile.addresses import SourceSets, collapsed
from gatewayd.compile.app_lookup import app_lookup_rules
from gatewayd.compile.kernel_names import (
    LINK_BALANCE_CHAIN,
    LINK_BALANCE_V6_CHAIN,
    LINK_CHOOSE_CHAIN,
    LINK_LOOKUP_CHAIN,
    TABLE_FAMILY,
    TABLE_NAME,
    link_connections_counter,
    link_mark_chain,
    link_pin_chain,
    link_route_table,
    link_rule_priority,
    link_set_chain,
)
from gatewayd.compile.nftables_model import BaseHook, NftChain, NftRule, NftSet
from gatewayd.compile.numbering import Numbering
from gatewayd.policy.model import IPAddress, LinkPin, Policy, WanLink

LINK_ROUTE_PRIORITY = -150  # NF_IP_PRI_MANGLE: the packet mark must be set before routing
SRCNAT_PRIORITY = 100  # NF_IP_PRI_NAT_SRC


def hexmark(value: int) -> str:
    return f"0x{value:08x}"


@dataclass(frozen=True)
class LinkRoute:
    """One link's policy routing for one address family: packets marked `mark`/`mask` use table
    `table`, whose default route leaves by `interface` (via `gateway`, or directly on a
    point-to-point link). IPv4 and IPv6 share the table number and rule priority: the
    kernel keeps the two families' rules and routes apart."""

    link: str
    interface: str
    gateway: IPAddress | None
    mark: int
    mask: int
    table: int
    priority: int
    version: int = 4

    def render(self) -> str:
        via = f"via {self.gateway} " if self.gateway else ""
        ip = "ip" if self.version == 4 else "ip -6"
        return (f"{ip} rule add fwmark {hexmark(self.mark)}/{hexmark(self.mask)} table {self.table} "
                f"priority {self.priority}\n{ip} route replace default {via}dev {self.interface} table {self.table}")


@dataclass(frozen=True)
class CompiledLinks:
    sets: tuple[NftSet, ...] = ()
    chains: tuple[NftChain, ...] = ()
    counters: tuple[str, ...] = ()
    routes: tuple[LinkRoute, ...] = ()


def link_routes(policy: Policy, numbering: Numbering) -> tuple[LinkRoute, ...]:
    if not policy.multi_link:
        return ()
    numbers = numbering.links.numbers
    routes: list[LinkRoute] = []
    for link in policy.links:
        number = numbers[link.name]
        families = [(4, link.gateway), *([(6, link.gateway6)] if link.carries_ipv6 else [])]
        routes.extend(LinkRoute(link.name, link.interface, gateway, marks.link_bits(number), marks.LINK_MASK,
                                link_route_table(number), link_rule_priority(number), version)
                      for version, gateway in families)
    return tuple(routes)


def compile_links(policy: Policy, numbering: Numbering) -> CompiledLinks:
    if not policy.multi_link:
        return CompiledLinks()
    numbers = numbering.links.numbers
    lan = "{ " + ", ".join(f'"{name}"' for name in policy.interfaces.lan) + " }"
    chains: list[NftChain] = []
    sets: list[NftSet] = []
    for link in policy.links:
        number = numbers[link.name]
        keep = 0xFFFFFFFF & ~marks.LINK_MASK
        chains.append(NftChain(link_set_chain(number), (
            NftRule(f"ct mark set ct mark & {hexmark(keep)} | {hexmark(marks.link_bits(number))}", comment=link.name),
            NftRule(f"counter name {link_connections_counter(number)}"),
        )))
        chains.append(NftChain(link_mark_chain(number), (
            NftRule(f"meta mark set meta mark & {hexmark(keep)} | {hexmark(marks.link_bits(number))}",
                    comment=f"routing table {link_route_table(number)}"),
        )))
    pin_rules = []
    for index, pin in enumerate(policy.link_pins, start=1):
        pin_rules.extend(_pin_rules(policy, numbering, index, pin, sets))
    needs_apps = any(pin.apps or pin.categories for pin in policy.link_pins)
    lookup = [
        NftRule(f"ct mark & {hexmark(marks.GROUP_MASK)} == 0 jump assign_group",
                comment="group first: the app chains count the flow per group"),
        NftRule(f"ct mark & {hexmark(marks.APP_MASK)} == 0 jump {LINK_LOOKUP_CHAIN}",
                comment="the app from the addresses the kernel knows, as the classify chain would"),
    ] if needs_apps else []
    if needs_apps:
        chains.append(NftChain(LINK_LOOKUP_CHAIN, tuple(app_lookup_rules()),
                               comment="catalog and DNS-learned addresses, for app pins on the first packet"))
    if any(link.carries_ipv6 for link in policy.links):
        choose = [*lookup, *pin_rules, NftRule(f"meta nfproto ipv6 goto {LINK_BALANCE_V6_CHAIN}",
                                               comment="over the links with gateway6")]
    else:  # no link routes IPv6: its connections get no link (the main table routes them, failover spares them)
        choose = [NftRule("meta nfproto ipv6 return", comment="no link has gateway6"), *lookup, *pin_rules]
    chains.append(NftChain(LINK_CHOOSE_CHAIN, (*choose, NftRule(f"goto {LINK_BALANCE_CHAIN}")),
                           comment="a new office connection: pins first (file order), else the balance"))
    chains.extend(choice_chains(policy, numbers, frozenset(link.name for link in policy.links)))
    restore = ", ".join(f"{hexmark(marks.link_bits(numbers[link.name]))} : goto {link_mark_chain(numbers[link.name])}"
                        for link in policy.links)
    route_rules = [
        NftRule(f"iifname {lan} ct state new ct mark & {hexmark(marks.LINK_MASK)} == 0 jump {LINK_CHOOSE_CHAIN}"),
        *(NftRule(f"iifname \"{link.interface}\" ct state new ct mark & {hexmark(marks.LINK_MASK)} == 0 "
                  f"jump {link_set_chain(numbers[link.name])}", comment=f"arrived on {link.name}: replies leave by it")
          for link in policy.links),
        NftRule(f"iifname {lan} ct mark & {hexmark(marks.LINK_MASK)} vmap {{ {restore} }}",
                comment="the connection's link into the packet mark, for ip rule fwmark"),
    ]
    chains.append(NftChain("link_route", tuple(route_rules), BaseHook("prerouting", LINK_ROUTE_PRIORITY)))
    chains.append(NftChain("link_nat", tuple(
        NftRule(f"iifname {lan} oifname \"{link.interface}\" masquerade", comment=link.name)
        for link in policy.links), BaseHook("postrouting", SRCNAT_PRIORITY, kind="nat")))
    counters = tuple(link_connections_counter(numbers[link.name]) for link in policy.links)
    return CompiledLinks(tuple(sets), tuple(chains), counters, link_routes(policy, numbering))


def _pin_rules(policy: Policy, numbering: Numbering, index: int, pin: LinkPin, sets: list[NftSet]) -> list[NftRule]:
    """One nft rule per address family the pin's criteria leave possible; all of them goto link_pin_N."""
    app_match = ""
    if pin.apps or pin.categories:
        numbers = sorted(numbering.apps.numbers[a] for a in policy.apps_of_pin(pin) if a in numbering.apps.numbers)
        if not numbers:
            return []
        values = ", ".join(hexmark(marks.app_bits(n)) for n in numbers)
        app_match = f"ct mark & {hexmark(marks.APP_MASK)} {{ {values} }}"
    sources: dict[int, list[str]] = {4: [""], 6: [""]}
    if pin.groups:
        members = SourceSets(policy.groups[g] for g in pin.groups)
        sources = {4: [], 6: []}
        for version, elements, key_type in ((4, members.v4, "ipv4_addr"), (6, members.v6, "ipv6_addr")):
            if elements:
                name = f"link_pin_{index}_src_v{version}"
                sets.append(NftSet(name, key_type, flags=("interval",), elements=tuple(elements),
                                   comment=f"link pin {pin.name}: groups"))
                sources[version].append(f"{'ip' if version == 4 else 'ip6'} saddr @{name}")
        if members.macs:
            name = f"link_pin_{index}_src_mac"
            sets.append(NftSet(name, "ether_addr", elements=tuple(members.macs),
                               comment=f"link pin {pin.name}: groups"))
            for version in (4, 6):
                sources[version].append(f"meta nfproto ipv{version} ether saddr @{name}")
    destinations: dict[int, str | None] = {4: "", 6: ""}
    if pin.destinations:
        for version, key_type in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            networks = collapsed([n for n in pin.destinations if n.version == version])  # overlaps refused by nft
            if not networks:
                destinations[version] = None  # the pin names no network of this family: it cannot match
                continue
            name = f"link_pin_{index}_dst_v{version}"
            sets.append(NftSet(name, key_type, flags=("interval",), elements=tuple(networks),
                               comment=f"link pin {pin.name}: destinations"))
            destinations[version] = f"{'ip' if version == 4 else 'ip6'} daddr @{name}"
    rules = []
    for version in (4, 6):
        destination = destinations[version]
        if destination is None:
            continue
        for source in sources[version]:
            parts = [p for p in (source, destination, app_match, f"goto {link_pin_chain(index)}") if p]
            rules.append(NftRule(" ".join(parts), comment=f"{pin.name} ({pin.location})" if pin.location else pin.name))
    # With neither sources nor destinations, both families produced the same rule.
    return list(dict.fromkeys(rules))


def choice_chains(policy: Policy, numbers: dict[str, int], up: frozenset[str]) -> tuple[NftChain, ...]:
    """link_balance, link_balance_v6 (if a link has gateway6) and link_pin_N for the links in `up`
    (all of them when none is up: with no line working, the weights still decide, and the first
    link back takes over); `numbers`: Numbering.links."""
    usable = [link for link in policy.links if link.name in up] or list(policy.links)
    chains = [NftChain(LINK_BALANCE_CHAIN, (_balance_rule(usable, numbers),),
                       comment="new connections by weight over the up links; rewritten on failover")]
    ipv6_links = [link for link in policy.links if link.carries_ipv6]
    if ipv6_links:
        usable6 = [link for link in ipv6_links if link.name in up] or ipv6_links
        chains.append(NftChain(LINK_BALANCE_V6_CHAIN, (_balance_rule(usable6, numbers),),
                               comment="new IPv6 connections by weight over the up links with gateway6"))
    ipv6_names = {link.name for link in ipv6_links}
    for index, pin in enumerate(policy.link_pins, start=1):
        first_up = next((name for name in pin.links if name in up), None)
        target = f"goto {link_set_chain(numbers[first_up])}" if first_up else f"goto {LINK_BALANCE_CHAIN}"
        rules = [NftRule(target, comment=first_up or "none up: balance")]
        first_up6 = next((name for name in pin.links if name in up and name in ipv6_names), None)
        if ipv6_names and first_up6 != first_up:  # IPv6 skips the pin's links without gateway6
            target6 = f"goto {link_set_chain(numbers[first_up6])}" if first_up6 else f"goto {LINK_BALANCE_V6_CHAIN}"
            rules.insert(0, NftRule(f"meta nfproto ipv6 {target6}", comment=first_up6 or "no IPv6 link up: balance"))
        chains.append(NftChain(link_pin_chain(index), tuple(rules),
                               comment=f"pin {pin.name}: first up of {', '.join(pin.links)}"))
    return tuple(chains)


def _balance_rule(usable: list[WanLink], numbers: dict[str, int]) -> NftRule:
    if len(usable) == 1:
        return NftRule(f"goto {link_set_chain(numbers[usable[0].name])}", comment=usable[0].name)
    slots = []
    start = 0
    for link in usable:
        end = start + link.weight - 1
        key = str(start) if start == end else f"{start}-{end}"
        slots.append(f"{key} : goto {link_set_chain(numbers[link.name])}")
        start = end + 1
    return NftRule(f"numgen random mod {start} vmap {{ {', '.join(slots)} }}",
                   comment=", ".join(f"{link.name} {link.weight}" for link in usable))


def choice_script(policy: Policy, numbers: dict[str, int], up: frozenset[str]) -> str:
    """The one nft transaction that points new connections at the links in `up`."""
    lines = []
    for chain in choice_chains(policy, numbers, up):
        lines.append(f"flush chain {TABLE_FAMILY} {TABLE_NAME} {chain.name}")
        lines.extend(f"add rule {TABLE_FAMILY} {TABLE_NAME} {chain.name} {rule.render().strip()}"
                     for rule in chain.rules)
    return "\n".join(lines) + "\n"
