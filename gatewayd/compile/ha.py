"""The `ha` section -> each node's keepalived.conf, conntrackd.conf and radvd.conf, and the takeover hold table.

Plain text and data, no kernel: `gatewayd render` prints it, `gatewayd ha-config`
writes one node's files, and the unit tests read it.

What conntrackd carries (checked in conntrack-tools 1.4.7, Debian 12's, src/build.c
`ct2msg`): every state message holds the tuple, status, L4 protocol and TCP state,
the timeout, the whole 32-bit ct mark (NTA_MARK, whenever the kernel reports one),
the ct labels (NTA_LABELS), NAT (SNAT/DNAT address and port, sequence adjustment)
and the helper. There is no option that leaves the mark out. gatewayd keeps every
per-flow decision in the ct mark (compile/marks.py: app, group, block flag, class;
it writes no ct label, zone or secmark), so a flow decided on the old master stays
decided on the new one, in the kernel, without the classifier. Limits of that:

* Only states that pass conntrackd's filter travel: the filter below accepts TCP,
  UDP, ICMP and ICMPv6 and ignores only traffic to the boxes themselves (loopback,
  sync and virtual addresses).
* The kernel reports a changed mark (IPCT_MARK) when a packet of the flow is
  confirmed, on its way out (postrouting/input). A mark written on a packet that is
  then dropped, such as the first blocked packet of a flow, reaches the peer only
  with that flow's next forwarded packet or its end; until then the peer holds the
  flow as undecided and the new master would classify it again.
* The backup keeps the states in conntrackd's external cache, not in its kernel,
  until `conntrackd -c` commits them on takeover; hence the hold below.

The takeover hold (keepalived #2254, #2414): keepalived brings the virtual addresses
up before the synced states are committed, and a segment of an open connection that
finds no state is picked up as a new flow (or, with NAT, answered with a reset by the
box itself). The table `inet gatewayd_ha` drops, never resets, such packets on the
LAN and WAN ports while the set `hold` names those ports: TCP that conntrack does not
know and is no opening SYN, and UDP that would start a new flow. `gatewayd ha-notify`
fills the set when the node becomes backup (nothing flows through a backup), and on
becoming master refreshes it with a timeout (so a stuck commit cannot hold the office
for long), commits conntrackd's states, checks that gatewayd's own table is in
force, and empties it. Flows conntrackd synced do not wait for that Python process
to start: keepalived runs `conntrackd -c` itself from the LAN instance's own
notify_master (early_commit_command), and a committed flow is no longer held.

IPv6 default router (RFC 4861: hosts route to the source of the Router Advertisement,
a link-local address): keepalived moves the LAN's link-local virtual address (fe80::1
unless the policy names one) with the others, and radvd runs on both boxes with
`AdvRASrcAddress` naming only that address. radvd 2.19 (Debian 12's) sends an RA only
from a listed address present on the interface and never falls back to the box's own
link-local (checked in a namespace pair), so only the master advertises, and it does
so within a second of keepalived adding the address (radvd follows address changes
over netlink); its RAs carry the master's MAC (source link-layer option), which also
moves the hosts' neighbour entry of fe80::1. No notify has to start or stop radvd, and
the hosts' default route (via fe80::1) is the same before and after a failover.
Run it as `radvd -C DIR/radvd.conf -p DIR/radvd.pid` beside keepalived.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gatewayd.compile.kernel_names import HA_HOLD_CHAIN, HA_HOLD_SET, HA_TABLE_NAME, TABLE_FAMILY
from gatewayd.compile.nftables_model import BaseHook, NftChain, NftRule, NftSet, NftTable
from gatewayd.policy.model import HaNode, HaPair, Interfaces, IPInterface

DEFAULT_RUNTIME_DIR = "/run/gatewayd/ha"
DEFAULT_GATEWAYD_COMMAND = "/usr/bin/gatewayd"
SYNC_PORT = 3780  # conntrackd's usual port on the sync link
CONNTRACKD_PROGRAM = "/usr/sbin/conntrackd"
# After conntrack (-200), before destination NAT (-100): the state lookup is done, nothing rewritten yet.
HOLD_PRIORITY = -150
HOLD_TIMEOUT_SECONDS = 10  # the longest a takeover may hold the office, whatever happens to the commit
INSTANCE_PREFIX = "gatewayd_"
SYNC_GROUP = "gatewayd"
NOTIFY_STATES = ("master", "backup", "fault")
# conntrackd's socket buffers and caches, as its FTFW example sets them for a busy firewall.
SOCKET_BUFFER_BYTES = 1_249_280
HASH_SIZE = 32_768
HASH_LIMIT = 262_144  # twice nf_conntrack_max (131,072 on a 4 GB box): dead entries wait in the caches
# Router advertisements: the hosts' default route via the link-local virtual address lives
# RA_ROUTER_LIFETIME_SECONDS from the last RA, so an RA every minute or so keeps it far from expiry.
RA_MIN_INTERVAL_SECONDS, RA_MAX_INTERVAL_SECONDS = 20, 60
RA_ROUTER_LIFETIME_SECONDS = 1800  # RFC 4861's default (3 x its 600 s MaxRtrAdvInterval)
SLAAC_PREFIX_LENGTH = 64  # RFC 4862 address autoconfiguration works on /64 prefixes only


@dataclass(frozen=True)
class HaPaths:
    """Where one node's files and sockets live, and how keepalived calls gatewayd back."""

    runtime_dir: str = DEFAULT_RUNTIME_DIR
    gatewayd_command: str = DEFAULT_GATEWAYD_COMMAND

    @property
    def conntrackd_config(self) -> str:
        return f"{self.runtime_dir}/conntrackd.conf"

    @property
    def keepalived_config(self) -> str:
        return f"{self.runtime_dir}/keepalived.conf"

    @property
    def radvd_config(self) -> str:
        return f"{self.runtime_dir}/radvd.conf"


@dataclass(frozen=True)
class NodeConfig:
    node: str
    keepalived_conf: str
    conntrackd_conf: str
    radvd_conf: str | None = None  # None: the LAN has no IPv6 virtual address, no RAs to send


@dataclass(frozen=True)
class CompiledHa:
    pair: HaPair
    held_interfaces: tuple[str, ...]  # the ports the takeover hold covers: LAN ports and WAN
    hold_table: NftTable
    nodes: tuple[NodeConfig, ...]

    def for_node(self, name: str) -> NodeConfig | None:
        return next((config for config in self.nodes if config.node == name), None)

    def render(self) -> str:
        parts = ["# --- ha: the takeover hold (its own table; filled by `gatewayd ha-notify`) ---",
                 self.hold_table.render()]
        for config in self.nodes:
            parts.append(f"# --- ha: keepalived.conf of node {config.node} ---")
            parts.append(config.keepalived_conf)
            parts.append(f"# --- ha: conntrackd.conf of node {config.node} ---")
            parts.append(config.conntrackd_conf)
            if config.radvd_conf is not None:
                parts.append(f"# --- ha: radvd.conf of node {config.node} ---")
                parts.append(config.radvd_conf)
        return "\n".join(parts)


def compile_ha(pair: HaPair, interfaces: Interfaces, paths: HaPaths = HaPaths()) -> CompiledHa:
    held = (*interfaces.lan, interfaces.wan)
    return CompiledHa(
        pair=pair,
        held_interfaces=held,
        hold_table=hold_table(),
        nodes=tuple(
            NodeConfig(node.name, keepalived_conf(pair, node, interfaces, held, paths),
                       conntrackd_conf(pair, node, paths), radvd_conf(pair, node, interfaces))
            for node in pair.nodes
        ),
    )


def hold_table() -> NftTable:
    not_opening = "tcp flags & (syn | ack) != syn"
    return NftTable(
        TABLE_FAMILY, HA_TABLE_NAME,
        sets=(NftSet(HA_HOLD_SET, "ifname", flags=("timeout",),
                     comment="ports held until the synced states are committed"),),
        chains=(NftChain(HA_HOLD_CHAIN, (
            NftRule(f"iifname @{HA_HOLD_SET} meta l4proto tcp ct state new,invalid {not_opening} counter drop",
                    "a segment of a flow not committed yet: drop, never reset"),
            NftRule(f"iifname @{HA_HOLD_SET} meta l4proto udp ct state new counter drop",
                    "would start a new flow in place of a synced one"),
        ), BaseHook("prerouting", HOLD_PRIORITY)),),
        comment="gatewayd: HA takeover hold",
    )


def hold_elements(interfaces: tuple[str, ...], timeout_seconds: int | None = None) -> str:
    """The `add element` command that holds these ports (for `timeout_seconds`, or until removed)."""
    suffix = f" timeout {timeout_seconds}s" if timeout_seconds else ""
    members = ", ".join(f'"{name}"{suffix}' for name in interfaces)
    return f"add element {TABLE_FAMILY} {HA_TABLE_NAME} {HA_HOLD_SET} {{ {members} }}"


def notify_command(paths: HaPaths, node: str, state: str, held: tuple[str, ...]) -> str:
    words = [*shlex.split(paths.gatewayd_command), "ha-notify", state, "--node", node,
             "--conntrackd-config", paths.conntrackd_config, "--hold", ",".join(held)]
    return " ".join(shlex.quote(word) for word in words)


def _advert_seconds(centiseconds: int) -> str:
    return f"{centiseconds // 100}" if centiseconds % 100 == 0 else f"{centiseconds / 100:.2f}".rstrip("0")


def _address_lines(addresses: tuple[IPInterface, ...], device: str) -> tuple[list[str], list[str]]:
    """keepalived adverts carry one family: the first family's addresses in `virtual_ipaddress`,
    the other's in `virtual_ipaddress_excluded` (moved with the instance, not advertised)."""
    if not addresses:
        return [], []
    # policy/ha.py orders them: the first family first and, within IPv6, the link-local address
    # first (keepalived wants an IPv6 instance's first address link-local, RFC 5798 section 5.2.9).
    family = addresses[0].version
    advertised = [f"{address} dev {device}" for address in addresses if address.version == family]
    moved = [f"{address} dev {device}" for address in addresses if address.version != family]
    return advertised, moved


def early_commit_command(paths: HaPaths) -> str:
    """The LAN instance's own notify_master: `conntrackd -c` at once, a C program started in
    milliseconds, while the group's `gatewayd ha-notify master` is still starting Python (about
    0.4 s on a loaded box). Synced flows are forwarded from the commit on; ha-notify's own commit
    after it only finds the states already there."""
    return " ".join(shlex.quote(word) for word in (CONNTRACKD_PROGRAM, "-C", paths.conntrackd_config, "-c"))


def _instance(name: str, device: str, router_id: int, pair: HaPair, node: HaNode,
              addresses: tuple[IPInterface, ...], notify_master: str | None = None) -> list[str]:
    advertised, moved = _address_lines(addresses, device)
    preempt = ["    nopreempt"] if pair.preempt_delay_seconds is None else (
        [f"    preempt_delay {pair.preempt_delay_seconds}"] if pair.preempt_delay_seconds else [])
    lines = [
        f"vrrp_instance {name} {{",
        "    state BACKUP",  # both start as backup: priority and preemption decide, not start order
        f"    interface {device}",
        f"    virtual_router_id {router_id}",
        f"    priority {node.priority}",
        f"    advert_int {_advert_seconds(pair.advert_centiseconds)}",
        *preempt,
        *([f'    notify_master "{notify_master}"'] if notify_master else []),
        "    virtual_ipaddress {",
        *(f"        {line}" for line in advertised),
        "    }",
    ]
    if moved:
        lines += ["    virtual_ipaddress_excluded {", *(f"        {line}" for line in moved), "    }"]
    return [*lines, "}"]


def keepalived_conf(pair: HaPair, node: HaNode, interfaces: Interfaces, held: tuple[str, ...],
                    paths: HaPaths) -> str:
    peer = pair.peer_of(node.name)
    instances = [f"{INSTANCE_PREFIX}lan"] + ([f"{INSTANCE_PREFIX}wan"] if pair.wan_addresses else [])
    lines = [
        f"# gatewayd: keepalived for node {node.name} (peer {peer.name}); generated, do not edit",
        "global_defs {",
        f"    router_id {node.name}",
        "    vrrp_version 3",  # IPv6 and sub-second adverts
        "    script_user root",  # the notify runs nft and conntrackd
        "    enable_script_security",  # keepalived refuses root scripts in paths others could write to
        "}",
        "",
        f"vrrp_sync_group {SYNC_GROUP} {{",  # LAN and WAN move together, or the office routes into a hole
        "    group {",
        *(f"        {name}" for name in instances),
        "    }",
        *(f'    notify_{state} "{notify_command(paths, node.name, state, held)}"' for state in NOTIFY_STATES),
        "}",
        "",
        *_instance(instances[0], interfaces.lan[0], pair.router_id, pair, node, pair.lan_addresses,
                   early_commit_command(paths)),
    ]
    if pair.wan_addresses:
        lines += ["", *_instance(instances[1], interfaces.wan, pair.router_id + 1, pair, node, pair.wan_addresses)]
    return "\n".join(lines) + "\n"


def conntrackd_conf(pair: HaPair, node: HaNode, paths: HaPaths) -> str:
    peer = pair.peer_of(node.name)
    family = "IPv4" if node.sync_address.version == 4 else "IPv6"
    ignored = [("IPv4", "127.0.0.1"), ("IPv6", "::1")]
    ignored += [("IPv4" if n.sync_address.version == 4 else "IPv6", str(n.sync_address)) for n in pair.nodes]
    ignored += [("IPv4" if a.version == 4 else "IPv6", str(a.ip)) for a in pair.lan_addresses + pair.wan_addresses]
    return "\n".join([
        f"# gatewayd: conntrackd for node {node.name} (peer {peer.name}); generated, do not edit",
        "Sync {",
        "    Mode FTFW {",
        "        DisableExternalCache Off",  # the backup's kernel gets the states on takeover (-c)
        "    }",
        "    UDP {",
        f"        {family}_address {node.sync_address}",
        f"        {family}_Destination_Address {peer.sync_address}",
        f"        Port {SYNC_PORT}",
        f"        Interface {pair.sync_interface}",
        f"        SndSocketBuffer {SOCKET_BUFFER_BYTES}",
        f"        RcvSocketBuffer {SOCKET_BUFFER_BYTES}",
        "        Checksum on",
        "    }",
        "}",
        "General {",
        "    Systemd off",
        f"    HashSize {HASH_SIZE}",
        f"    HashLimit {HASH_LIMIT}",
        "    LogFile off",
        "    Syslog on",
        f"    LockFile {paths.runtime_dir}/conntrackd.lock",
        "    UNIX {",
        f"        Path {paths.runtime_dir}/conntrackd.ctl",
        "    }",
        "    NetlinkBufferSize 2097152",
        "    NetlinkBufferSizeMaxGrowth 8388608",
        "    Filter From Userspace {",
        "        Protocol Accept {",
        "            TCP",
        "            UDP",
        "            ICMP",
        "            IPv6-ICMP",
        "        }",
        "        Address Ignore {",  # the boxes' own traffic: it never moves to the peer
        *(f"            {kind}_address {address}" for kind, address in ignored),
        "        }",
        "    }",
        "}",
    ]) + "\n"


def radvd_conf(pair: HaPair, node: HaNode, interfaces: Interfaces) -> str | None:
    """RAs from the LAN's link-local virtual address only: radvd runs on both boxes, and only
    the one holding the address (the master) sends (see the module's docstring)."""
    source = pair.lan_link_local
    if source is None:
        return None
    prefixes = [address.network for address in pair.lan_addresses
                if address.version == 6 and not address.ip.is_link_local]
    lines = [
        f"# gatewayd: radvd for node {node.name} (peer {pair.peer_of(node.name).name}); generated, do not edit",
        f"# Only the master holds {source.ip}, so only the master sends these.",
        f"interface {interfaces.lan[0]} {{",
        "    AdvSendAdvert on;",
        f"    MinRtrAdvInterval {RA_MIN_INTERVAL_SECONDS};",
        f"    MaxRtrAdvInterval {RA_MAX_INTERVAL_SECONDS};",
        f"    AdvDefaultLifetime {RA_ROUTER_LIFETIME_SECONDS};",
        f"    AdvRASrcAddress {{ {source.ip}; }};",
    ]
    for prefix in prefixes:
        autonomous = "on" if prefix.prefixlen == SLAAC_PREFIX_LENGTH else "off"
        lines.append(f"    prefix {prefix} {{ AdvOnLink on; AdvAutonomous {autonomous}; }};")
    return "\n".join([*lines, "};"]) + "\n"
