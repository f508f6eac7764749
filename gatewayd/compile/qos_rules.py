"""The nft side of QoS: which HTB class a packet goes to, and connection caps per host.

Class choice, in the enforce chain, for every packet of an office flow:
  1. `meta priority set ct mark & (GROUP|CLASS) map @class_priority`: the
     flow's policy class inside its group's subtree (or the shared leaves).
     Without shaped groups the key is the class bits alone, as before.
  2. per-host classes override it: `ip saddr map @host_up_v4` on
     original-direction packets (upload), `ip daddr map @host_down_v4` on
     replies (download). A miss leaves step 1's choice. One hash lookup per
     packet whatever the number of hosts: no rule per host.
  3. small control packets go to the tree's control leaf (tc_tree.py), last so
     they override steps 1 and 2: TCP packets under CONTROL_PACKET_BYTES
     (pure ACKs, SYN, FIN, RST; a GRO aggregate is never that small) and UDP
     DNS either way. Flows of a class ahead of the control leaf (realtime)
     keep their own class, which is served first anyway.

Per-host classes are made on demand (apply/tc.py): creating an HTB class
costs time in proportion to the classes already in its qdisc, so 5,000 of
them up front take seconds, and 60,000 take minutes. A limited host whose
classes are not made yet is in @hosts_classless_vN; its first packet puts it
in @hosts_waiting_vN, which the daemon watches (daemon/host_classes.py): it
makes the host's classes, puts the host in the host maps and takes it out
of both sets (apply/host_sets.py). Until then, one poll of 0.1 s plus the
class creation, the host's packets keep the class its group and app give
them (step 1): its group's ceiling holds, its own limits do not yet.

Connection caps: a new flow of a group with `max_connections` passes
`add @connlimit_G_N_v4 { ip saddr ct count over N }`, a dynamic set that keeps
one conntrack count per source address (named by group and cap, kept across
reloads: see kernel_names.refused_counter); flow N+1 is refused (TCP reset, else
dropped) and counted in the named counter `connections_refused_G_PROTO` (G: the group's name)
(tcp, udp, other). The cap means "N connections to the outside world", so
the chain `connection_caps` lets these pass uncounted:
  - DNS (UDP and TCP port 53) to the policy's dns.resolvers: a UDP lookup
    holds its conntrack entry, and so a slot, for ~30 s after its answer, and
    a host at its cap would see names stop resolving rather than a refusal;
    DNS to any other server is a connection to the outside and counts;
  - ICMP and ICMPv6: ping and traceroute are how anyone finds out why a
    connection fails, and must keep working at the cap;
  - traffic to the router itself (its resolver, its web UI): that takes the
    input hook, never the forward hook these chains run in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.compile import marks
from gatewayd.compile.host_limits import HostSlots
from gatewayd.compile.kernel_names import (
    CONNECTION_CAPS_CHAIN,
    REFUSED_PROTOCOLS,
    classless_set_name,
    connlimit_set_name,
    host_map_name,
    refused_counter,
    resolver_set_name,
    waiting_set_name,
)
from gatewayd.compile.nftables_model import NftChain, NftRule, NftSet
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.tc_tree import CONTROL_MINOR, HTB_MAJOR, control_class, group_leaf_minor
from gatewayd.policy.model import Direction, Policy

CONNLIMIT_SET_SIZE = 65535
HOST_MAP_SIZE_MIN = 1024  # room for a reload that adds hosts without resizing
# IP length: a v6 header (40) plus a TCP header with every option (60) is 100, and a few bytes of
# payload (a keystroke, a TLS alert) are control traffic too; a data segment is ~1,500 bytes.
CONTROL_PACKET_BYTES = 128


def hexmark(value: int) -> str:
    return f"0x{value:08x}"


@dataclass
class QosRules:
    sets: list[NftSet] = field(default_factory=list)
    chains: list[NftChain] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # sets and counters a reload keeps (NftTable.kept)
    after_policy: list[NftRule] = field(default_factory=list)  # new flows the rules allowed
    priority: list[NftRule] = field(default_factory=list)  # pick the HTB class


def compile_qos_rules(policy: Policy, numbering: Numbering, hosts: HostSlots | None = None) -> QosRules:
    qos = QosRules()
    _class_priority(policy, numbering, qos)
    _host_maps(hosts or HostSlots(), qos)
    _control_packets(policy, numbering, qos)
    _connection_limits(policy, numbering, qos)
    return qos


def _class_priority(policy: Policy, numbering: Numbering, qos: QosRules) -> None:
    shaped = {name for name, group in policy.groups.items() if group.qos.shaped}
    if not shaped:
        elements = tuple(f"{hexmark(marks.class_bits(index))} : {HTB_MAJOR}:{numbering.tc_minor(name):x}"
                         for name, index in numbering.classes.items())
        qos.sets.append(NftSet("class_priority", "mark", "classid", elements=elements,
                               comment="class bits of the ct mark -> tc class (skb priority)"))
        qos.priority.append(NftRule(f"meta priority set ct mark & {hexmark(marks.CLASS_MASK)} map @class_priority"))
        return
    group_elements: list[str] = []
    for group_name, number in sorted(numbering.groups.numbers.items(), key=lambda kv: kv[1]):
        for class_name, index in numbering.classes.items():
            minor = group_leaf_minor(number, index) if group_name in shaped else numbering.tc_minor(class_name)
            key = marks.group_bits(number) | marks.class_bits(index)
            group_elements.append(f"{hexmark(key)} : {HTB_MAJOR}:{minor:x}")
    qos.sets.append(NftSet("class_priority", "mark", "classid", elements=tuple(group_elements),
                           comment="group and class bits of the ct mark -> tc class (skb priority)"))
    mask = marks.GROUP_MASK | marks.CLASS_MASK
    qos.priority.append(NftRule(f"meta priority set ct mark & {hexmark(mask)} map @class_priority"))


def _host_maps(hosts: HostSlots, qos: QosRules) -> None:
    for version, family, key_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
        addresses = tuple(str(h.address) for h in hosts.hosts if h.address.version == version)
        if not addresses:
            continue
        size = max(HOST_MAP_SIZE_MIN, 2 * len(addresses))
        classless, waiting = classless_set_name(version), waiting_set_name(version)
        qos.sets.append(NftSet(classless, key_type, elements=addresses, size=size,
                               comment="limited hosts whose tc classes are not made yet"))
        qos.sets.append(NftSet(waiting, key_type, flags=("dynamic",), size=size,
                               comment="limited hosts seen before their classes existed: the daemon makes them"))
        qos.priority.append(NftRule(f"ct direction original {family} saddr @{classless} "
                                    f"add @{waiting} {{ {family} saddr }}", comment="a limited host's first packet"))
        qos.priority.append(NftRule(f"ct direction reply {family} daddr @{classless} "
                                    f"add @{waiting} {{ {family} daddr }}"))
    matches: tuple[tuple[Direction, str, str], ...] = (("upload", "saddr", "original"), ("download", "daddr", "reply"))
    for direction, match, ct_direction in matches:
        limited = hosts.by_direction(direction)
        for version, family in ((4, "ip"), (6, "ip6")):
            elements = tuple(f"{h.address} : {HTB_MAJOR}:{h.minor:x}" for h in limited if h.address.version == version)
            if not elements:
                continue
            name = host_map_name(direction, version)
            qos.sets.append(NftSet(name, "ipv4_addr" if version == 4 else "ipv6_addr", "classid",
                                   elements=elements, size=max(HOST_MAP_SIZE_MIN, 2 * len(elements)),
                                   comment=f"per-host limits: {direction} class of each host"))
            qos.priority.append(NftRule(f"ct direction {ct_direction} meta priority set {family} {match} map @{name}",
                                        comment=f"per-host {direction} limits"))


def _control_packets(policy: Policy, numbering: Numbering, qos: QosRules) -> None:
    control_priority = control_class(policy, policy.interfaces.upload_bps).priority  # the same on every tree
    ahead = sorted(marks.class_bits(numbering.classes[name])
                   for name, qos_class in policy.classes.items() if qos_class.priority < control_priority)
    keep_ahead = (f"ct mark & {hexmark(marks.CLASS_MASK)} != {{ {', '.join(hexmark(b) for b in ahead)} }} "
                  if ahead else "")
    target = f"meta priority set {HTB_MAJOR}:{CONTROL_MINOR:x}"
    qos.priority.append(NftRule(f"meta l4proto tcp meta length < {CONTROL_PACKET_BYTES} {keep_ahead}{target}",
                                comment="ACKs and handshakes ahead of data"))
    qos.priority.append(NftRule(f"meta l4proto udp th sport 53 {keep_ahead}{target}", comment="DNS answers"))
    qos.priority.append(NftRule(f"meta l4proto udp th dport 53 {keep_ahead}{target}", comment="DNS lookups"))


def _connection_limits(policy: Policy, numbering: Numbering, qos: QosRules) -> None:
    verdicts = []
    for name, group in policy.groups.items():
        cap = group.qos.max_connections
        if cap is None:
            continue
        number = numbering.groups.numbers[name]
        counters = [refused_counter(name, protocol) for protocol in REFUSED_PROTOCOLS]
        qos.counters.extend(counters)
        qos.kept.extend(counters)
        refuse = f"refuse_connection_{number}"
        qos.chains.append(NftChain(refuse, (
            NftRule(f"meta l4proto tcp counter name {refused_counter(name, 'tcp')} reject with tcp reset"),
            NftRule(f"meta l4proto udp counter name {refused_counter(name, 'udp')} drop"),
            NftRule(f"counter name {refused_counter(name, 'other')} drop"),
        ), comment=f"group {name}: over {cap} connections per host"))
        rules = []
        for version, family, key_type in ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr")):
            set_name = connlimit_set_name(name, cap, version)
            qos.kept.append(set_name)  # its ct counts cannot be written back: a reload must not drop them
            qos.sets.append(NftSet(set_name, key_type, flags=("dynamic",), size=CONNLIMIT_SET_SIZE,
                                   comment=f"group {name}: connections per host"))
            rules.append(NftRule(f"meta nfproto ipv{version} add @{set_name} {{ {family} saddr ct count over {cap} }} "
                                 f"goto {refuse}"))
        qos.chains.append(NftChain(f"connection_limit_{number}", tuple(rules),
                                   comment=f"group {name}: at most {cap} connections per host"))
        verdicts.append(f"{hexmark(marks.group_bits(number))} : jump connection_limit_{number}")
    if not verdicts:
        return
    qos.sets.append(NftSet("connection_limits", "mark", "verdict", elements=tuple(verdicts),
                           comment="group bits of the ct mark -> its connection cap"))
    qos.chains.append(NftChain(CONNECTION_CAPS_CHAIN, (
        *_uncounted_flows(policy, qos),
        NftRule(f"ct mark & {hexmark(marks.GROUP_MASK)} vmap @connection_limits"),
    ), comment="new office flows to the outside world: counted by their group's cap"))
    qos.after_policy.append(NftRule(f"ct state new ct direction original jump {CONNECTION_CAPS_CHAIN}",
                                    comment="connection caps per host"))


def _uncounted_flows(policy: Policy, qos: QosRules) -> list[NftRule]:
    """New flows that are not "connections to the outside world"; see the module's docstring.

    Traffic to the router itself needs no rule: it never reaches the forward hook.
    """
    rules = [NftRule("meta l4proto { icmp, ipv6-icmp } return", comment="ping and traceroute are not connections")]
    for version, family in ((4, "ip"), (6, "ip6")):
        if not any(a.version == version for a in policy.dns.resolvers):
            continue
        name = resolver_set_name(version)  # declared with the DNS rules (compile/dns_rules.py)
        rules.append(NftRule(f"meta l4proto {{ tcp, udp }} th dport 53 {family} daddr @{name} return",
                             comment="DNS to the office's own resolvers"))
    return rules
