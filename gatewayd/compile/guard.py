"""Compile the `security` section into the LAN guard: two nft tables of gatewayd's own.

  netdev gatewayd_guard   chain lan_ingress, hook ingress on every LAN interface,
                          priority -500: the first thing a LAN frame meets, before
                          the IP stack and conntrack, so a flood costs one lookup
                          per packet and never fills the conntrack table.
      ARP (arp_guard): a sender address that is the gateway's own, or bound to
          another MAC, is dropped: the gateway's neighbour table keeps the true MAC.
      IP: blocklisted sources; bound addresses sent from the wrong MAC; unbound
          sources when the policy says drop; SYN / UDP / ICMP echo over their
          per-source limits (meters); then scan detection: a source's first
          packet to a new port (or host) spends a token of a per-source meter,
          and a source out of tokens is put in the timed blocklist.
  inet gatewayd_guard     needs the IP layer: one base chain, lan_prerouting (prerouting,
                          -140, after conntrack), which a packet of an office flow
                          under way (established, started on the LAN) leaves at once:
      antispoof: strict reverse-path check (fib), so a LAN packet must carry a
          source the LAN routes back to.
      new connections per source (meter).

Both are independent of the classifier's `inet gatewayd` table and go into the
kernel in the same transaction as it (see `script`). Runtime elements (the
gateway's own addresses, learned bindings, the blocklist carried over a
reload) are added in that transaction by apply/guard_state.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gatewayd.compile.addresses import collapsed
from gatewayd.compile.kernel_names import (
    BINDINGS,
    BLOCKLIST,
    BOUND,
    GATEWAY_ADDRESSES,
    GATEWAY_CLAIMS_COUNTER,
    GUARD_TABLE_NAME,
    INET,
    NETDEV,
    SWEEPERS,
    SYN_PROXY_COUNTER,
)
from gatewayd.compile.marks import GROUP_MASK
from gatewayd.compile.nftables_model import (
    BaseHook,
    KernelObjects,
    NftChain,
    NftRule,
    NftSet,
    NftTable,
)
from gatewayd.policy.model import Binding, RateLimit, ScanDefence, SecurityPolicy

INGRESS_PRIORITY = -500
SYN_PROXY_UNTRACK_PRIORITY = -300  # raw: before conntrack, which must not track the proxied SYNs
LAN_PREROUTING_PRIORITY = -140  # after conntrack (-200), where ct state is known
METER_SIZE = 65535
SEEN_SIZE = 262144
ALL_TABLES = ((NETDEV, GUARD_TABLE_NAME), (INET, GUARD_TABLE_NAME))

# Drop reasons: the fixed label set of gatewayd_guard_dropped_packets_total.
REASON_ARP_SPOOF = "arp_spoof"
REASON_IP_MAC_MISMATCH = "ip_mac_mismatch"
REASON_UNBOUND = "unbound_host"
REASON_SPOOFED_SOURCE = "spoofed_source"
REASON_SYN_FLOOD = "syn_flood"
REASON_UDP_FLOOD = "udp_flood"
REASON_ICMP_FLOOD = "icmp_flood"
REASON_NEW_CONNECTION_FLOOD = "new_connection_flood"
REASON_PORT_SCAN = "port_scan"
REASON_HOST_SWEEP = "host_sweep"
REASON_BLOCKLISTED = "blocklisted"
REASON_SYN_PROXY_INVALID = "syn_proxy_invalid"  # a handshake the SYN proxy did not validate
REASONS = (REASON_ARP_SPOOF, REASON_IP_MAC_MISMATCH, REASON_UNBOUND, REASON_SPOOFED_SOURCE,
           REASON_SYN_FLOOD, REASON_UDP_FLOOD, REASON_ICMP_FLOOD, REASON_NEW_CONNECTION_FLOOD,
           REASON_PORT_SCAN, REASON_HOST_SWEEP, REASON_BLOCKLISTED, REASON_SYN_PROXY_INVALID)
BLOCKLIST_REASONS = (REASON_PORT_SCAN, REASON_HOST_SWEEP)  # what puts a host on the blocklist

FAMILY = {4: ("ip", "ipv4_addr", "ip"), 6: ("ip6", "ipv6_addr", "ip6")}  # match, key type, meta protocol
MULTICAST = {4: "{ 224.0.0.0/4, 255.255.255.255 }", 6: "ff00::/8"}  # not hosts a sweep counts
SYN_ONLY = "tcp flags & (fin | syn | rst | ack) == syn"
# ACK set, no SYN or RST: a segment of a connection under way. Stealth scans (FIN, Xmas,
# NULL) carry no ACK, so they are still counted.
ESTABLISHED_TCP = "tcp flags & (syn | rst | ack) == ack"
SECONDS_PER_UNIT = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def limit_text(limit: RateLimit) -> str:
    return f"limit rate over {limit.count}/{limit.unit} burst {limit.burst} packets"


def scan_rate(count: int, window_seconds: int) -> str:
    """`count` per window as an nft rate: the smallest unit that keeps it a whole number."""
    for unit in ("second", "minute", "hour", "day"):
        per_unit = count * SECONDS_PER_UNIT[unit]
        if per_unit % window_seconds == 0:
            return f"{per_unit // window_seconds}/{unit}"
    return f"{-(-count * SECONDS_PER_UNIT['day'] // window_seconds)}/day"


def binding_elements(bindings: tuple[Binding, ...] | list[Binding],
                     version: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(bound addresses, address . mac pairs) of one family."""
    chosen = [b for b in bindings if b.address.version == version]
    return tuple(str(b.address) for b in chosen), tuple(f"{b.address} . {b.mac}" for b in chosen)


@dataclass(frozen=True)
class CompiledGuard:
    security: SecurityPolicy | None
    tables: tuple[NftTable, ...]
    counters: dict[str, dict[str, str]] = field(default_factory=dict)  # table family -> counter -> reason

    def render(self) -> str:
        if not self.tables:
            return "# --- LAN guard: none (no security section) ---\n"
        return "# --- LAN guard: same transaction ---\n" + "".join(t.render() for t in self.tables)

    def script(self, present: Mapping[str, KernelObjects], runtime_elements: tuple[str, ...] = ()) -> str:
        """Swap the guard tables in, or remove those the policy no longer has.

        `present`: the objects each guard table (by family) has in the kernel now. A table that
        stays keeps its base chains (NftTable.swap_script): unregistering any hook makes the
        kernel drop every packet waiting in NFQUEUE, the classifier's too. Removing the guard
        (a policy that drops the security section) does unregister its hooks, once.
        """
        wanted = {table.family: table for table in self.tables}
        parts = []
        for family, name in ALL_TABLES:
            table = wanted.get(family)
            if table is None:
                parts.append(f"table {family} {name}\ndelete table {family} {name}\n")
            else:
                parts.append(table.swap_script(present.get(family, KernelObjects())))
        parts.extend(line + "\n" for line in runtime_elements)
        return "".join(parts)

    def has_table(self, family: str) -> bool:
        return any(t.family == family for t in self.tables)


def teardown_script() -> str:
    # Declaring each table first makes the delete succeed whether or not it exists.
    return "".join(f"table {family} {GUARD_TABLE_NAME}\ndelete table {family} {GUARD_TABLE_NAME}\n"
                   for family, _ in ALL_TABLES)


class GuardCompiler:
    def __init__(self, security: SecurityPolicy, lan: tuple[str, ...], wan: str = "") -> None:
        self.security = security
        self.lan = lan
        self.lan_set = "{ " + ", ".join(f'"{i}"' for i in lan) + " }"
        self.wan = wan
        self.netdev_sets: list[NftSet] = []
        self.netdev_counters: dict[str, str] = {}
        self.inet_counters: dict[str, str] = {}

    def compile(self) -> CompiledGuard:
        tables = []
        netdev = self._netdev_table()
        if netdev is not None:
            tables.append(netdev)
        inet = self._inet_table()
        if inet is not None:
            tables.append(inet)
        return CompiledGuard(self.security, tuple(tables), {NETDEV: self.netdev_counters, INET: self.inet_counters})

    def _syn_proxy_chains(self) -> list[NftChain]:
        """SYN proxy for services exposed to the WAN (on the gateway or routed behind it).

        Their SYNs skip conntrack (raw), the kernel's synproxy answers with a SYN
        cookie, and only a client that completes the handshake is passed on, as a
        new connection, to the server: a spoofed SYN flood never reaches it.
        Needs net.netfilter.nf_conntrack_tcp_loose=0 (apply/guard_state.py sets it),
        so that the handshake's last ACK is "invalid" and reaches synproxy.
        """
        ports = self.security.syn_proxy_ports
        if not ports or not self.wan:
            return []
        self.inet_counters[SYN_PROXY_COUNTER] = SYN_PROXY_COUNTER
        self.inet_counters[REASON_SYN_PROXY_INVALID] = REASON_SYN_PROXY_INVALID
        wan = f'iifname "{self.wan}"'
        port_set = "{ " + ", ".join(str(port) for port in ports) + " }"
        proxy = (f"{wan} tcp dport {port_set} ct state invalid,untracked counter name {SYN_PROXY_COUNTER} "
                 "synproxy mss 1460 wscale 7 timestamp sack-perm")
        drop_invalid = f"{wan} tcp dport {port_set} ct state invalid counter name {REASON_SYN_PROXY_INVALID} drop"
        return [
            NftChain("syn_proxy_untrack", (NftRule(f"{wan} tcp dport {port_set} tcp flags syn notrack"),),
                     BaseHook("prerouting", SYN_PROXY_UNTRACK_PRIORITY)),
            NftChain("syn_proxy_local", (NftRule(proxy), NftRule(drop_invalid)), BaseHook("input", 0)),
            NftChain("syn_proxy_forward", (NftRule(proxy), NftRule(drop_invalid)), BaseHook("forward", 0)),
        ]

    def _count(self, reason: str) -> str:
        self.netdev_counters[reason] = reason
        return f"counter name {reason}"

    # --- netdev: frames from the LAN ---
    def _netdev_table(self) -> NftTable | None:
        security = self.security
        rules: list[NftRule] = []
        chains: list[NftChain] = []
        if security.scan is not None:
            rules.extend(self._blocklist_rules())
        if security.bindings is not None or security.anti_spoofing:
            for version in (4, 6):
                self.netdev_sets.append(NftSet(GATEWAY_ADDRESSES[version], FAMILY[version][1],
                                               comment="the gateway's own LAN addresses (filled at apply)"))
        if security.anti_spoofing:
            for version in (4, 6):
                match = FAMILY[version][0]
                rules.append(NftRule(f"{match} saddr @{GATEWAY_ADDRESSES[version]} "
                                     f"{self._count(REASON_SPOOFED_SOURCE)} drop",
                                     comment="a LAN frame with the gateway's own source address"))
        if security.bindings is not None:
            chains.append(self._arp_chain())
            rules.insert(0, NftRule("ether type arp jump arp_guard"))
            rules.extend(self._binding_rules())
        flood_rules = self._flood_rules()
        if flood_rules or security.scan is not None:
            # Floods (SYN, UDP, ICMP echo), scans and sweeps open something new; a segment of a
            # connection under way matches none of them, so it skips their tests and lookups:
            # that keeps a bulk transfer's per-packet cost low. The checks above (blocklist,
            # spoofed source, bindings) still see every frame.
            rules.append(NftRule(f"meta l4proto tcp {ESTABLISHED_TCP} accept",
                                 comment="established TCP: nothing left to check"))
        rules.extend(flood_rules)
        if security.scan is not None:
            rules.extend(self._scan_rules(security.scan))
        if not rules:
            return None
        chains.insert(0, NftChain("lan_ingress", tuple(rules), BaseHook("ingress", INGRESS_PRIORITY, devices=self.lan),
                                  comment="every frame the LAN sends, before the IP stack"))
        # The claims counter is not a drop reason (those are counted by reason already): declared
        # beside them, outside `netdev_counters`, so the drop metrics do not see it.
        claims = (GATEWAY_CLAIMS_COUNTER,) if security.bindings is not None else ()
        counter_names = tuple(self.netdev_counters) + claims
        return NftTable(NETDEV, GUARD_TABLE_NAME, counter_names, tuple(self.netdev_sets), tuple(chains),
                        comment="gatewayd LAN guard (layer 2 and floods)")

    def _blocklist_rules(self) -> list[NftRule]:
        assert self.security.scan is not None
        rules = []
        for version in (4, 6):
            match, key_type, _ = FAMILY[version]
            self.netdev_sets.append(NftSet(BLOCKLIST[version], key_type, flags=("dynamic", "timeout"), size=METER_SIZE,
                                           comment=f"scanners, released after {self.security.scan.block_seconds}s"))
            rules.append(NftRule(f"{match} saddr @{BLOCKLIST[version]} {self._count(REASON_BLOCKLISTED)} drop"))
        return rules

    def _arp_chain(self) -> NftChain:
        assert self.security.bindings is not None
        rules = [
            NftRule(f"arp saddr ip @{GATEWAY_ADDRESSES[4]} {self._count(REASON_ARP_SPOOF)} "
                    f"counter name {GATEWAY_CLAIMS_COUNTER} drop",
                    comment="someone claims the gateway's address (the daemon re-announces it)"),
            NftRule(f"arp saddr ip @{BOUND[4]} arp saddr ip . arp saddr ether != @{BINDINGS[4]} "
                    f"{self._count(REASON_ARP_SPOOF)} drop", comment="a bound address claimed by another MAC"),
        ]
        if self.security.bindings.unbound == "drop":
            rules.append(NftRule(f"arp saddr ip != @{BOUND[4]} arp saddr ip != 0.0.0.0 "
                                 f"{self._count(REASON_UNBOUND)} drop",
                                 comment="unbound: drop (ARP probes from 0.0.0.0 pass)"))
        return NftChain("arp_guard", tuple(rules), comment="requests and replies alike: both teach neighbour tables")

    def _binding_rules(self) -> list[NftRule]:
        bindings = self.security.bindings
        assert bindings is not None
        rules = []
        for version in (4, 6):
            match, key_type, _ = FAMILY[version]
            bound, pairs = binding_elements(bindings.static, version)
            self.netdev_sets.append(NftSet(BOUND[version], key_type, elements=bound, comment="bound addresses"))
            self.netdev_sets.append(NftSet(BINDINGS[version], f"{key_type} . ether_addr", elements=pairs,
                                           comment="address . the only MAC it may come from"))
            rules.append(NftRule(f"{match} saddr @{BOUND[version]} {match} saddr . ether saddr != @{BINDINGS[version]} "
                                 f"{self._count(REASON_IP_MAC_MISMATCH)} drop"))
        if bindings.unbound == "drop":
            rules.append(NftRule(f"ip saddr != @{BOUND[4]} ip saddr != 0.0.0.0 {self._count(REASON_UNBOUND)} drop",
                                 comment="unbound: drop (DHCP from 0.0.0.0 passes)"))
            rules.append(NftRule(f"ip6 saddr != @{BOUND[6]} ip6 saddr != {{ ::, fe80::/10 }} "
                                 f"{self._count(REASON_UNBOUND)} drop",
                                 comment="unbound: drop (link-local and DAD pass: neighbour discovery needs them)"))
        return rules

    def _flood_rules(self) -> list[NftRule]:
        flood = self.security.flood
        rules = []
        for name, limit, reason, matches in (
            ("syn", flood.syn, REASON_SYN_FLOOD, {4: SYN_ONLY, 6: SYN_ONLY}),
            ("udp", flood.udp, REASON_UDP_FLOOD, {4: "meta l4proto udp", 6: "meta l4proto udp"}),
            ("icmp", flood.icmp_echo, REASON_ICMP_FLOOD, {4: "icmp type echo-request", 6: "icmpv6 type echo-request"}),
        ):
            if limit is None:
                continue
            for version in (4, 6):
                match, key_type, protocol = FAMILY[version]
                meter = f"{name}_flood_v{version}"
                self.netdev_sets.append(NftSet(meter, key_type, flags=("dynamic", "timeout"), size=METER_SIZE,
                                               comment=f"{name} rate per source", timeout=60))
                rules.append(NftRule(f"meta protocol {protocol} {matches[version]} update @{meter} "
                                     f"{{ {match} saddr {limit_text(limit)} }} {self._count(reason)} drop"))
        return rules

    def _scan_rules(self, scan: ScanDefence) -> list[NftRule]:
        rules = []
        for version in (4, 6):
            match, key_type, protocol = FAMILY[version]
            exempt = f"scan_exempt_v{version}"
            elements = tuple(collapsed([n for n in scan.allow if n.version == version]))  # overlaps refused by nft
            self.netdev_sets.append(NftSet(exempt, key_type, flags=("interval",), elements=elements,
                                           comment="admin allow-list: never blocklisted"))
            rules.append(NftRule(f"{match} saddr @{exempt} return"))
            blocklist = f"add @{BLOCKLIST[version]} {{ {match} saddr timeout {scan.block_seconds}s }}"
            if scan.ports is not None:
                seen = f"seen_ports_v{version}"
                meter = f"port_scan_v{version}"
                self._scan_sets(seen, f"{key_type} . inet_proto . inet_service", meter, key_type, scan, "ports")
                key = f"{match} saddr . meta l4proto . th dport"
                for first_packet in (SYN_ONLY, "meta l4proto udp"):
                    rules.append(NftRule(
                        f"meta protocol {protocol} {first_packet} {key} != @{seen} add @{seen} {{ {key} }} "
                        f"update @{meter} {{ {match} saddr "
                        f"limit rate over {scan_rate(scan.ports, scan.window_seconds)} "
                        f"burst {scan.ports} packets }} {blocklist} {self._count(REASON_PORT_SCAN)} drop",
                        comment=f"more than {scan.ports} new ports in {scan.window_seconds}s"))
            if scan.hosts is not None:
                seen = f"seen_hosts_v{version}"
                meter = f"host_sweep_v{version}"
                self._scan_sets(seen, f"{key_type} . {key_type}", meter, key_type, scan, "hosts")
                key = f"{match} saddr . {match} daddr"
                self.netdev_sets.append(NftSet(SWEEPERS[version], key_type, flags=("dynamic", "timeout"),
                                               size=METER_SIZE, comment="blocklisted for sweeping hosts"))
                sweeper = f"add @{SWEEPERS[version]} {{ {match} saddr timeout {scan.block_seconds}s }}"
                rules.append(NftRule(
                    f"{match} daddr != {MULTICAST[version]} {key} != @{seen} add @{seen} {{ {key} }} "
                    f"update @{meter} {{ {match} saddr limit rate over {scan_rate(scan.hosts, scan.window_seconds)} "
                    f"burst {scan.hosts} packets }} {blocklist} {sweeper} {self._count(REASON_HOST_SWEEP)} drop",
                    comment=f"more than {scan.hosts} new hosts in {scan.window_seconds}s"))
        return rules

    def _scan_sets(self, seen: str, seen_type: str, meter: str, key_type: str, scan: ScanDefence, what: str) -> None:
        self.netdev_sets.append(NftSet(seen, seen_type, flags=("dynamic", "timeout"), size=SEEN_SIZE,
                                       comment=f"{what} each source touched in the window",
                                       timeout=scan.window_seconds))
        self.netdev_sets.append(NftSet(meter, key_type, flags=("dynamic", "timeout"), size=METER_SIZE,
                                       comment=f"new {what} per source", timeout=scan.window_seconds))

    # --- inet: checks that need routing or conntrack ---
    def _inet_table(self) -> NftTable | None:
        chains = []
        sets = []
        # One base chain for every LAN check that needs the IP layer, after conntrack: a packet
        # of an office flow under way leaves it after one rule, and a WAN packet after one.
        rules = [NftRule(f"iifname != {self.lan_set} return", comment="LAN packets only"),
                 NftRule(f"ct state established ct direction original ct mark & {GROUP_MASK:#010x} != 0 return",
                         comment="an office flow the LAN started: its first packet passed the checks below")]
        if self.security.anti_spoofing:
            self.inet_counters[REASON_SPOOFED_SOURCE] = REASON_SPOOFED_SOURCE
            # A flow's first packets (and every packet of a flow the LAN did not start, or not yet
            # put in a group by the classify chain) get the FIB lookup; the group bits are only
            # set on flows whose first packet came in on a LAN port (policy table, classify), so a
            # LAN host cannot skip the check by forging packets of a flow the WAN started. Here,
            # after conntrack (-200), a spoofed packet gets an unconfirmed conntrack entry that the
            # drop frees: it never fills the table (that happens at confirmation, after forward).
            # A shortcut "source in the LAN's own prefixes: accept" was weighed and left out: it
            # trades the FIB lookup for an interval-set lookup (one tree walk either way) and
            # would accept a source the routing table sends elsewhere (a more specific route to a
            # branch behind a tunnel).
            chains.append(NftChain("antispoof", (
                NftRule("ip saddr 0.0.0.0 udp dport 67 return", comment="DHCP before it has an address"),
                NftRule("ip6 saddr :: return", comment="duplicate address detection"),
                NftRule(f"fib saddr . iif oif missing counter name {REASON_SPOOFED_SOURCE} drop",
                        comment="strict reverse path: the source must route back out of the interface it came in on"),
            )))
            rules.append(NftRule("jump antispoof"))
        limit = self.security.flood.new_connections
        if limit is not None:
            self.inet_counters[REASON_NEW_CONNECTION_FLOOD] = REASON_NEW_CONNECTION_FLOOD
            for version in (4, 6):
                match, key_type, _ = FAMILY[version]
                meter = f"new_connections_v{version}"
                sets.append(NftSet(meter, key_type, flags=("dynamic", "timeout"), size=METER_SIZE,
                                   comment="new connections per source", timeout=60))
                rules.append(NftRule(f"ct state new update @{meter} {{ {match} saddr {limit_text(limit)} }} "
                                     f"counter name {REASON_NEW_CONNECTION_FLOOD} drop"))
        if len(rules) > 2:
            chains.append(NftChain("lan_prerouting", tuple(rules), BaseHook("prerouting", LAN_PREROUTING_PRIORITY)))
        chains.extend(self._syn_proxy_chains())
        if not chains:
            return None
        return NftTable(INET, GUARD_TABLE_NAME, tuple(self.inet_counters), tuple(sets), tuple(chains),
                        comment="gatewayd LAN guard (routing and conntrack checks)")


def compile_guard(security: SecurityPolicy | None, lan: tuple[str, ...], wan: str = "") -> CompiledGuard:
    if security is None:
        return CompiledGuard(None, ())
    return GuardCompiler(security, lan, wan).compile()
