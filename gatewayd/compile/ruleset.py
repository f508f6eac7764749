"""Compile a policy into the `inet gatewayd` nft table.

Packet path through the table (forward hook only: gatewayd shapes and filters
traffic the router passes between office and internet):

  classify (priority mangle, -150)  runs before iptables' filter FORWARD:
      1. a new office flow gets its group number (assign_group);
      2. lookups to the policy's resolvers and their answers are marked for the
         classifier, so it can learn addresses (compile/dns_rules.py);
      3. an undecided flow is decided here if its server address is in the
         catalog or was learned from DNS, in that order: what the catalog or
         the policy lists is never overridden (vmaps into set_app_N chains);
      4. otherwise its first packets are marked QUEUE_REQUEST; the
         iptables-nft NFQUEUE rule (filter FORWARD, priority 0, apply/queue_rule.py)
         hands them to the classifier. This kernel has no native nft `queue`.
      5. past max_packets: decided by port, or "unknown", so it stops queuing.
  enforce (priority filter + 10)  runs after the NFQUEUE verdict:
      1. the classifier's verdict, carried in the packet mark, is saved in the
         ct mark (an NFQUEUE accept leaves the current chain, hence a later hook);
      2. the policy chain runs on original-direction packets until the flow is
         decided, then once per rules epoch (compile/decision_epoch.py): the
         daemon starts a new epoch on every policy change and schedule
         boundary, so those reach flows already open;
      3. reply packets of blocked flows are dropped; every packet gets the tc
         class of its flow through skb priority (no cls_fw needed).

All per-flow state lives in the ct mark; see compile/marks.py for the bits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gatewayd.compile import marks
from gatewayd.compile.addresses import SourceSets
from gatewayd.compile.app_lookup import app_lookup_rules
from gatewayd.compile.decision_epoch import decided_flows_chain
from gatewayd.compile.dns_rules import DNS_MAX_PACKETS, compile_dns_rules
from gatewayd.compile.host_limits import HostSlots
from gatewayd.compile.intervals import AddressPort, disjoint_address_ports, disjoint_networks, disjoint_port_ranges
from gatewayd.compile.kernel_names import (
    COUNTER_BLOCKED_OTHER,
    COUNTER_BLOCKED_REPLIES,
    COUNTER_BLOCKED_TCP,
    COUNTER_BLOCKED_UDP,
    COUNTER_DEFAULT,
    COUNTER_GAVE_UP,
    COUNTER_HOST_QUEUE_RATE,
    COUNTER_QUEUED,
    COUNTER_TCP_ONLY,
    DECIDED_FLOWS_CHAIN,
    EMPTY_TCP_CHAIN,
    FIXED_COUNTERS,
    HOST_BYTES,
    MAP_LEARNED_V4,
    MAP_LEARNED_V6,
    SET_FLOWS,
    SET_RECENT_BLOCKED_V4,
    SET_RECENT_BLOCKED_V6,
    SET_USAGE,
    TABLE_FAMILY,
    TABLE_NAME,
    set_app_chain,
)
from gatewayd.compile.links import compile_links
from gatewayd.compile.nftables_model import (
    BaseHook,
    NftChain,
    NftRule,
    NftSet,
    NftTable,
    TableBuilder,
)
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.qos_rules import compile_qos_rules
from gatewayd.compile.rule_dispatch import BLOCK_ACTION, PolicyRule, blockable_apps, compile_rule_dispatch
from gatewayd.compile.schedule import schedule_matches
from gatewayd.compile.tunnels import compile_tunnels
from gatewayd.policy.model import IPNetwork, Policy, Rule
from gatewayd.policy.tcp_only import tcp_only_apps

CLASSIFY_PRIORITY = -150  # NF_IP_PRI_MANGLE: before iptables filter FORWARD
ENFORCE_PRIORITY = 10  # after iptables filter FORWARD, where the NFQUEUE rule sits
LEARNED_MAP_SIZE = 262144
USAGE_SET_SIZE = 65535

TCP_ONLY_RULE_NAME = "tcp-only"

# Per-host byte counters: one element per office host, group and direction. The size bounds the
# kernel memory and the collector's read of the set whatever the LAN does (measured: ~130 ms per
# 1,000 hosts, so ~2 s for a full set); the timeout forgets hosts idle an hour. Prometheus only
# sees the busiest metrics.top_talkers of them (metrics/top_talkers.py).
HOST_BYTES_SIZE = 16384
HOST_BYTES_TIMEOUT = 3600  # seconds

RECENT_BLOCKED_SIZE = 1024
RECENT_BLOCKED_TIMEOUT = 600  # seconds

USAGE_KEY_MASK = marks.APP_MASK | marks.GROUP_MASK | marks.BLOCK_BIT | marks.CLASS_MASK
FLOWS_KEY_MASK = marks.APP_MASK | marks.GROUP_MASK

# The host_queue_rate meters: one entry per LAN host seen queueing, forgotten after a quiet minute.
# A full meter cannot add a host, so that host's packets are queued as before (nft: the update fails).
QUEUE_RATE_HOSTS = 65536
QUEUE_RATE_IDLE_SECONDS = 60


def hexmark(value: int) -> str:
    return f"0x{value:08x}"


def rule_counter_name(index: int, rule: Rule) -> str:
    slug = re.sub(r"[^a-zA-Z0-9_]+", "_", rule.name).strip("_")[:40]
    return f"rule_{index}_{slug}" if slug else f"rule_{index}"


@dataclass(frozen=True)
class CompiledRuleset:
    table: NftTable
    rule_counters: dict[str, str]  # counter name -> rule name ("default" for the default)
    warnings: tuple[str, ...]
    # App numbers some block rule can apply to (None: any app, e.g. a block rule naming no app or
    # `default: block`). The daemon announces a flow the classifier decides for one of these
    # (apply/conntrack_events.py): its deciding packet may be dropped, so no event would tell conntrackd.
    blockable_apps: frozenset[int] | None = frozenset()


class RulesetCompiler:
    def __init__(self, policy: Policy, numbering: Numbering, host_slots: HostSlots | None = None) -> None:
        self.policy = policy
        self.numbering = numbering
        self.host_slots = host_slots
        self.table = TableBuilder(TABLE_FAMILY, TABLE_NAME)
        self.warnings: list[str] = []
        self.rule_counters: dict[str, str] = {}
        self.blockable_apps: frozenset[int] | None = frozenset()
        # The office: LAN ports and tunnels to branches (their flows are classified like the LAN's).
        self.lan_interfaces = "{ " + ", ".join(f'"{i}"' for i in policy.office_ports()) + " }"
        self.lan_match = f"iifname {self.lan_interfaces}"
        self.dns = compile_dns_rules(policy, self.lan_interfaces, CLASSIFY_PRIORITY, ENFORCE_PRIORITY)

    def compile(self) -> CompiledRuleset:
        self.table.counters.extend(FIXED_COUNTERS)
        self.rule_counters[COUNTER_DEFAULT] = "default"
        self._dynamic_sets()
        self._app_chains()
        self._group_chains()
        self._catalog_maps()
        self._classify_chain()
        self.table.sets.extend(self.dns.sets)
        self.table.chains.extend(self.dns.chains)
        self._policy_chain()
        self._block_chain()
        self._enforce_chain()
        self._link_chains()
        table = self.table.build(comment=f"managed by gatewayd from {self.policy.source}")
        return CompiledRuleset(table, dict(self.rule_counters), tuple(self.warnings), self.blockable_apps)

    # --- sets whose contents live across reloads ---
    def _dynamic_sets(self) -> None:
        self.table.sets.extend([
            NftSet(MAP_LEARNED_V4, "ipv4_addr", "verdict", ("timeout",), size=LEARNED_MAP_SIZE,
                   comment="server addresses learned from DNS answers"),
            NftSet(MAP_LEARNED_V6, "ipv6_addr", "verdict", ("timeout",), size=LEARNED_MAP_SIZE,
                   comment="server addresses learned from DNS answers"),
            NftSet(SET_USAGE, "mark", flags=("dynamic",), size=USAGE_SET_SIZE, counter=True,
                   comment="traffic per app, group, block flag and class (ct mark bits)"),
            NftSet(SET_FLOWS, "mark", flags=("dynamic",), size=USAGE_SET_SIZE, counter=True,
                   comment="decided flows per app and group"),
        ])
        for version, address in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            self.table.sets.append(NftSet(
                HOST_BYTES[version], f"{address} . mark . ct_dir", flags=("dynamic", "timeout"),
                size=HOST_BYTES_SIZE, timeout=HOST_BYTES_TIMEOUT, counter=True,
                comment="bytes per office host (address . group bits . direction): the top talkers"))
        for name, address in ((SET_RECENT_BLOCKED_V4, "ipv4_addr"), (SET_RECENT_BLOCKED_V6, "ipv6_addr")):
            self.table.sets.append(NftSet(
                name, f"{address} . {address} . inet_proto . inet_service . mark", flags=("dynamic", "timeout"),
                size=RECENT_BLOCKED_SIZE, timeout=RECENT_BLOCKED_TIMEOUT,
                comment="recently blocked flows (client . server . proto . port . ct mark) for `gatewayd status`"))

    # --- one tiny chain per app and group: the targets of verdict maps ---
    def _app_chains(self) -> None:
        for name, number in sorted(self.numbering.apps.numbers.items(), key=lambda kv: kv[1]):
            keep = 0xFFFFFFFF & ~marks.APP_MASK
            self.table.chains.append(NftChain(set_app_chain(number), (
                NftRule(f"ct mark set ct mark & {hexmark(keep)} | {hexmark(marks.app_bits(number))}",
                        comment=name),
                NftRule(f"update @{SET_FLOWS} {{ ct mark & {hexmark(FLOWS_KEY_MASK)} }}"),
            )))
        # jump, not goto: the enforce chain must go on to the rules after saving the app.
        verdicts = tuple(f"{hexmark(marks.app_bits(n))} : jump {set_app_chain(n)}"
                         for n in sorted(self.numbering.apps.numbers.values()))
        self.table.sets.append(NftSet("classifier_verdicts", "mark", "verdict", elements=verdicts,
                                      comment="app bits in the packet mark -> save into the ct mark"))

    def _group_chains(self) -> None:
        rules: list[NftRule] = []
        keep = 0xFFFFFFFF & ~marks.GROUP_MASK
        for name, number in sorted(self.numbering.groups.numbers.items(), key=lambda kv: kv[1]):
            self.table.chains.append(NftChain(f"set_group_{number}", (
                NftRule(f"ct mark set ct mark & {hexmark(keep)} | {hexmark(marks.group_bits(number))}",
                        comment=name),
            )))
        for name, group in self.policy.groups.items():
            number = self.numbering.groups.numbers[name]
            members = SourceSets([group])
            for statement in self._member_sets(f"group_{number}", members, f"group {name}"):
                rules.append(NftRule(f"{statement} goto set_group_{number}"))
        rules.append(NftRule(f"goto set_group_{marks.GROUP_NONE}"))
        self.table.chains.append(NftChain("assign_group", tuple(rules),
                                          comment="first group (file order) a new flow's source is in"))

    def _member_sets(self, prefix: str, members: SourceSets, comment: str) -> list[str]:
        """Declare the v4/v6/mac sets of `members`; return one match per family present."""
        matches = []
        for suffix, key_type, elements, match in (
            ("v4", "ipv4_addr", members.v4, "ip saddr"),
            ("v6", "ipv6_addr", members.v6, "ip6 saddr"),
            ("mac", "ether_addr", members.macs, "ether saddr"),
        ):
            if not elements:
                continue
            name = f"{prefix}_{suffix}"
            if not any(s.name == name for s in self.table.sets):
                flags = ("interval",) if suffix != "mac" else ()
                self.table.sets.append(NftSet(name, key_type, flags=flags, elements=tuple(elements),
                                              comment=comment))
            matches.append(f"{match} @{name}")
        return matches

    # --- catalog evidence the kernel can use on a flow's first packet ---
    def _catalog_maps(self) -> None:
        address_only: list[tuple[IPNetwork, str]] = []
        address_port: list[AddressPort] = []
        port_only: list[tuple[str, int, int, str]] = []
        for app in self.policy.applications.values():
            number = self.numbering.apps.numbers[app.id]
            verdict = f"goto {set_app_chain(number)}"
            if app.networks and app.ports:
                address_port.extend(AddressPort(network, port.protocol, port.first, port.last, verdict)
                                    for network in app.networks for port in app.ports)
            elif app.networks:
                address_only.extend((network, app.id) for network in app.networks)
            elif app.ports:  # ports without addresses: last-resort evidence, as in classify/tables.py
                port_only.extend((p.protocol, p.first, p.last, verdict) for p in app.ports)
            address_port.extend(AddressPort(entry.network, port.protocol, port.first, port.last, verdict)
                                for entry in app.networks_on_ports for port in entry.ports)
        disjoint = disjoint_networks(address_only)
        with_ports = disjoint_address_ports(address_port)
        for version, key_type in ((4, "ipv4_addr"), (6, "ipv6_addr")):
            elements = tuple(f"{net} : goto {set_app_chain(self.numbering.apps.numbers[app])}"
                             for net, app in disjoint if net.version == version)
            self.table.sets.append(NftSet(f"app_addresses_v{version}", key_type, "verdict", ("interval",),
                                          elements=elements, comment="catalog: server address -> app"))
            self.table.sets.append(NftSet(
                f"app_address_ports_v{version}", f"{key_type} . inet_proto . inet_service", "verdict",
                ("interval",), elements=tuple(sorted(
                    f"{e.network} . {e.protocol} . {self._port_text(e.first, e.last)} : {e.target}"
                    for e in with_ports if e.network.version == version)),
                comment="catalog: server address and port -> app"))
        self.table.sets.append(NftSet("app_ports", "inet_proto . inet_service", "verdict", ("interval",),
                                      elements=tuple(
                                          f"{proto} . {self._port_text(first, last)} : {verdict}"
                                          for proto, first, last, verdict in disjoint_port_ranges(port_only)),
                                      comment="catalog: port-only apps, the weakest evidence, used on give-up"))

    @staticmethod
    def _port_text(first: int, last: int) -> str:
        return str(first) if first == last else f"{first}-{last}"

    def _classify_chain(self) -> None:
        app_undecided = f"ct mark & {hexmark(marks.APP_MASK)} == 0"
        no_group = f"ct mark & {hexmark(marks.GROUP_MASK)} == 0"
        max_packets = self.policy.classifier.max_packets
        queue = f"meta mark set meta mark | {hexmark(marks.QUEUE_REQUEST)}"
        queue_from_server = f"meta mark set meta mark | {hexmark(marks.QUEUE_REQUEST | marks.FROM_SERVER)}"
        unknown_chain = set_app_chain(marks.APP_UNKNOWN)
        rules = [
            NftRule(f"{no_group} ct direction original {self.lan_match} jump assign_group",
                    comment="new office flow: which group"),
            NftRule(f"{no_group} return", comment="not an office flow: not ours to classify"),
            *self._skip_dns_rules_when_decided(),
            *self.dns.classify,
            NftRule(f"ct mark & {hexmark(marks.APP_MASK)} != 0 return", comment="decided: kernel only"),
            *app_lookup_rules(),
            NftRule(f"{app_undecided} ct packets <= {max_packets} meta l4proto tcp jump {EMPTY_TCP_CHAIN}"),
            *self._host_queue_rate_rules(f"{app_undecided} ct packets <= {max_packets}"),
            NftRule(f"{app_undecided} ct packets <= {max_packets} ct direction original "
                    f"counter name {COUNTER_QUEUED} {queue} return", comment="first packets to the classifier"),
            NftRule(f"{app_undecided} ct packets <= {max_packets} ct direction reply "
                    f"counter name {COUNTER_QUEUED} {queue_from_server} return"),
            NftRule(f"counter name {COUNTER_GAVE_UP} ct direction original meta l4proto . th dport vmap @app_ports"),
            NftRule("ct direction reply meta l4proto . th sport vmap @app_ports"),
            NftRule(f"goto {unknown_chain}", comment="undecided after max_packets: final"),
        ]
        self.table.chains.append(self._empty_tcp_chain())
        self.table.chains.append(NftChain("classify", tuple(rules),
                                          BaseHook("forward", CLASSIFY_PRIORITY)))

    def _host_queue_rate_rules(self, undecided: str) -> list[NftRule]:
        """Packets that would be queued for a LAN host over classifier.host_queue_rate pass unqueued.

        NFQUEUE is one FIFO: a host opening thousands of flows would put everyone else's first
        packets behind its own, long enough for their flows to run past max_packets unclassified
        (or for the socket to overflow and pass them by fail-open). The host is the client of its
        flows, so replies count against their destination. Over the rate a packet is not dropped:
        it passes as if the classifier were away, and its flow goes on to give up as usual.
        """
        rate = self.policy.classifier.host_queue_rate
        if not rate:
            return []
        rules = []
        for version, (match, key_type) in ((4, ("ip", "ipv4_addr")), (6, ("ip6", "ipv6_addr"))):
            meter = f"queue_rate_v{version}"
            self.table.sets.append(NftSet(meter, key_type, flags=("dynamic", "timeout"), size=QUEUE_RATE_HOSTS,
                                          timeout=QUEUE_RATE_IDLE_SECONDS,
                                          comment="classifier.host_queue_rate: queued packets per LAN host"))
            for direction, host in (("original", "saddr"), ("reply", "daddr")):
                rules.append(NftRule(
                    f"{undecided} ct direction {direction} update @{meter} "
                    f"{{ {match} {host} limit rate over {rate}/second burst {rate} packets }} "
                    f"counter name {COUNTER_HOST_QUEUE_RATE} return",
                    comment="host over its queue rate: passes unclassified" if host == "saddr" else ""))
        return rules

    def _skip_dns_rules_when_decided(self) -> list[NftRule]:
        """Every packet of a decided bulk flow would otherwise test each DNS rule (protocol set,
        packet count, port, resolver set) on its way to "decided: return"; past the packets those
        rules look at, none can match, so one cheap test ends the chain for it."""
        if not self.dns.classify:
            return []
        return [NftRule(f"ct mark & {hexmark(marks.APP_MASK)} != 0 ct packets > {DNS_MAX_PACKETS} return",
                        comment="decided, past the lookups' first packets: kernel only")]

    @staticmethod
    def _empty_tcp_chain() -> NftChain:
        """TCP packets that carry no payload are not worth a trip to Python.

        The handshake and bare ACKs teach the classifier nothing: who the client is
        comes with every queued packet (FROM_SERVER in the packet mark), and its byte
        stream starts at the first payload. A TLS flow is then one queued packet, the
        ClientHello, instead of four. nft cannot
        subtract header lengths, so each header size is a rule of its own; IPv4
        options or IPv6 extension headers just mean the packet is queued as before.
        (A set of `ip length . tcp doff` would be one lookup, but nft 1.0.6 aborts
        listing such a 4-bit concatenation.)
        """
        rules = []
        for doff in range(5, 16):
            rules.append(NftRule(f"ip length {20 + 4 * doff} tcp doff {doff} accept"))
            rules.append(NftRule(f"ip6 length {4 * doff} tcp doff {doff} accept"))
        return NftChain(EMPTY_TCP_CHAIN, tuple(rules), comment="no payload: nothing to classify, not queued")

    # --- the policy itself ---
    def _policy_chain(self) -> None:
        policy_rules: list[PolicyRule] = self._tcp_only_rules()
        for index, rule in enumerate(self.policy.rules, start=1):
            policy_rules.extend(self._compile_rule(index, rule))
        default_counter = f"counter name {COUNTER_DEFAULT}"
        if self.policy.default_action == "block":
            default = NftRule(f"{default_counter} {BLOCK_ACTION}", comment="default")
        else:
            default = NftRule(f"{default_counter} {self._set_class(self.policy.default_class)}", comment="default")
        policy_rules.append(PolicyRule(None, default))
        self.blockable_apps = blockable_apps(policy_rules)
        dispatch = compile_rule_dispatch(policy_rules)
        self.table.sets.extend(dispatch.sets)
        self.table.chains.extend(dispatch.chains)
        self.table.chains.append(decided_flows_chain(0))  # the daemon puts in its own epoch when applying

    def _tcp_only_rules(self) -> list[PolicyRule]:
        """classifier.tcp_only: UDP (QUIC) of these apps is blocked before any policy rule,
        so browsers fall back to TLS over TCP, where the SNI is visible."""
        names = self.policy.classifier.tcp_only
        if not names:
            return []
        apps = tcp_only_apps(names, self.policy.applications)
        numbers = frozenset(self.numbering.apps.numbers[a] for a in apps if a in self.numbering.apps.numbers)
        if not numbers:
            return []
        self.table.counters.append(COUNTER_TCP_ONLY)
        self.rule_counters[COUNTER_TCP_ONLY] = TCP_ONLY_RULE_NAME
        return [PolicyRule(numbers, NftRule(f"meta l4proto udp counter name {COUNTER_TCP_ONLY} {BLOCK_ACTION}",
                                            comment="classifier.tcp_only: " + ", ".join(names)))]

    def _set_class(self, class_name: str | None) -> str:
        class_name = class_name or self.policy.default_class
        keep = 0xFFFFFFFF & ~(marks.CLASS_MASK | marks.BLOCK_BIT)
        bits = marks.class_bits(self.numbering.classes[class_name])
        return f"ct mark set ct mark & {hexmark(keep)} | {hexmark(bits)} return"

    def _compile_rule(self, index: int, rule: Rule) -> list[PolicyRule]:
        counter = rule_counter_name(index, rule)
        self.table.counters.append(counter)
        self.rule_counters[counter] = rule.name
        where = f"{rule.name} ({rule.location})" if rule.location else rule.name

        apps: frozenset[int] | None = None
        if rule.apps or rule.categories:
            app_ids = self.policy.apps_of_rule(rule)
            apps = frozenset(self.numbering.apps.numbers[a] for a in app_ids if a in self.numbering.apps.numbers)
            if not apps:
                self.warnings.append(f"rule '{rule.name}' names no app the catalog has; it matches nothing")
                return []

        action = BLOCK_ACTION if rule.action == "block" else self._set_class(rule.qos_class)
        time_matches = schedule_matches(self.policy.schedules[rule.schedule]) if rule.schedule else [""]
        source_matches = self._source_matches(index, rule)
        policy_rules = []
        for source in source_matches:
            for when in time_matches:
                parts = [p for p in (source, when, f"counter name {counter}", action) if p]
                policy_rules.append(PolicyRule(apps, NftRule(" ".join(parts), comment=where)))
        return policy_rules

    def _source_matches(self, index: int, rule: Rule) -> list[str]:
        """Alternatives (one nft rule each) that together mean: source in groups, not in except_groups."""
        groups = [self.policy.groups[g] for g in rule.groups]
        excepted = SourceSets(self.policy.groups[g] for g in rule.except_groups)
        exc_v4 = exc_v6 = exc_mac = ""
        if excepted:
            for statement in self._member_sets(f"rule_{index}_except", excepted, f"rule {rule.name}: except"):
                name = statement.split("@", 1)[1]
                negated = statement.replace(" @", " != @")
                if name.endswith("_v4"):
                    exc_v4 = negated
                elif name.endswith("_v6"):
                    exc_v6 = negated
                else:
                    exc_mac = negated
        v4_exceptions = " ".join(p for p in (exc_v4, exc_mac) if p)
        v6_exceptions = " ".join(p for p in (exc_v6, exc_mac) if p)
        if not groups:
            if not excepted:
                return [""]
            return [f"meta nfproto ipv4 {v4_exceptions}".strip(), f"meta nfproto ipv6 {v6_exceptions}".strip()]

        members = SourceSets(groups)
        prefix = (f"group_{self.numbering.groups.numbers[rule.groups[0]]}" if len(groups) == 1
                  else f"rule_{index}_groups")
        alternatives = []
        for statement in self._member_sets(prefix, members, f"rule {rule.name}: groups"):
            if statement.startswith("ip saddr"):
                alternatives.append(f"{statement} {v4_exceptions}".strip())
            elif statement.startswith("ip6 saddr"):
                alternatives.append(f"{statement} {v6_exceptions}".strip())
            else:  # MAC members: the packet may be either family
                alternatives.append(f"meta nfproto ipv4 {statement} {v4_exceptions}".strip())
                alternatives.append(f"meta nfproto ipv6 {statement} {v6_exceptions}".strip())
        return alternatives

    def _block_chain(self) -> None:
        keep = 0xFFFFFFFF & ~marks.CLASS_MASK
        self.table.chains.append(NftChain("do_block", (
            NftRule(f"ct mark set ct mark & {hexmark(keep)} | {hexmark(marks.BLOCK_BIT)}"),
            NftRule(f"update @{SET_USAGE} {{ ct mark & {hexmark(USAGE_KEY_MASK)} }}"),
            # Own rules: a full set fails the update, which must not skip the reject below.
            NftRule(f"meta l4proto {{ tcp, udp }} update @{SET_RECENT_BLOCKED_V4} "
                    "{ ip saddr . ip daddr . meta l4proto . th dport . ct mark }"),
            NftRule(f"meta l4proto {{ tcp, udp }} update @{SET_RECENT_BLOCKED_V6} "
                    "{ ip6 saddr . ip6 daddr . meta l4proto . th dport . ct mark }"),
            NftRule(f"meta l4proto tcp counter name {COUNTER_BLOCKED_TCP} reject with tcp reset"),
            NftRule(f"meta l4proto udp counter name {COUNTER_BLOCKED_UDP} drop"),
            NftRule(f"counter name {COUNTER_BLOCKED_OTHER} drop"),
        ), comment="blocked: TCP gets a reset, the rest is dropped"))

    def _enforce_chain(self) -> None:
        qos = compile_qos_rules(self.policy, self.numbering, self.host_slots)  # classes, host limits, conn caps
        self.table.sets.extend(qos.sets)
        self.table.chains.extend(qos.chains)
        self.table.counters.extend(qos.counters)
        self.table.kept.extend(qos.kept)
        rules = (
            NftRule(f"ct mark & {hexmark(marks.GROUP_MASK)} == 0 return", comment="not an office flow"),
            NftRule(f"meta mark & {hexmark(marks.APP_MASK)} != 0 ct mark & {hexmark(marks.APP_MASK)} == 0 "
                    f"meta mark & {hexmark(marks.APP_MASK)} vmap @classifier_verdicts",
                    comment="the classifier's verdict: save it in the flow"),
            NftRule(f"meta mark & {hexmark(marks.GATEWAYD_MASK)} != 0 "
                    f"meta mark set meta mark & {hexmark(marks.OTHERS_MASK)}",
                    comment="leave the packet mark as we found it"),
            NftRule(f"ct direction original jump {DECIDED_FLOWS_CHAIN}"),
            *qos.after_policy,
            NftRule(f"ct mark & {hexmark(marks.BLOCK_BIT)} != 0 counter name {COUNTER_BLOCKED_REPLIES} drop"),
            *qos.priority,
            # Per-packet accounting stays (one hash update here, one per direction for the top
            # talkers): it is where the traffic metrics' bytes come from; conntrack's own counters
            # instead would need a destroy-event listener in the daemon for flows ending between scrapes.
            NftRule(f"update @{SET_USAGE} {{ ct mark & {hexmark(USAGE_KEY_MASK)} }}"),
            *self._host_bytes_rules(),
        )
        self.table.chains.append(NftChain("enforce", rules, BaseHook("forward", ENFORCE_PRIORITY)))

    @staticmethod
    def _host_bytes_rules() -> list[NftRule]:
        """Count each forwarded packet for its office host: the source of an original-direction
        packet (before NAT), the destination of a reply (after un-NAT). One rule each, so a full
        set fails only its own update."""
        group = f"ct mark & {hexmark(marks.GROUP_MASK)} . ct direction"
        return [NftRule(f"ct direction {direction} update @{HOST_BYTES[version]} {{ {family} {field} . {group} }}",
                        comment="top talkers" if version == 4 and direction == "original" else "")
                for direction, field in (("original", "saddr"), ("reply", "daddr"))
                for version, family in ((4, "ip"), (6, "ip6"))]


    def _link_chains(self) -> None:
        """Several WAN links: routing marks, balance, pins and NAT (compile/links.py), none for one WAN;
        the class of tunnels' outer flows (compile/tunnels.py)."""
        links = compile_links(self.policy, self.numbering)
        self.table.sets.extend(links.sets)
        self.table.chains.extend(links.chains)
        self.table.counters.extend(links.counters)
        self.table.chains.extend(compile_tunnels(self.policy, self.numbering))


def compile_ruleset(policy: Policy, numbering: Numbering, host_slots: HostSlots | None = None) -> CompiledRuleset:
    return RulesetCompiler(policy, numbering, host_slots).compile()
