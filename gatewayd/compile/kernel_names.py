"""The names of the kernel objects gatewayd owns: tables, chains, sets, maps, counters.

compile/ builds these objects; apply/, metrics/, control/ and daemon/ find them
again in the kernel by name. The names live here, apart from the modules that
compile the objects, so a reader of kernel state imports a list of names and
not a compiler. gatewayd touches no table but the ones named here.
"""

from __future__ import annotations

from typing import Literal

from gatewayd.policy.model import Direction

# --- `inet gatewayd`: the classifier's table (compile/ruleset.py) ---

TABLE_FAMILY = "inet"
TABLE_NAME = "gatewayd"

# Named counters besides one per rule; metrics read them by these names.
COUNTER_BLOCKED_TCP = "blocked_tcp"
COUNTER_BLOCKED_UDP = "blocked_udp"
COUNTER_BLOCKED_OTHER = "blocked_other"
COUNTER_BLOCKED_REPLIES = "blocked_replies"
COUNTER_QUEUED = "queued_packets"
COUNTER_DNS_SNOOPED = "dns_answers_queued"  # answers of the named resolvers and the router's own
COUNTER_DNS_QUERIES = "dns_queries_queued"  # lookups to the named resolvers
COUNTER_GAVE_UP = "flows_gave_up"
COUNTER_HOST_QUEUE_RATE = "queue_host_over_rate"  # undecided packets not queued: their host is over its rate
COUNTER_DEFAULT = "rule_default"
COUNTER_TCP_ONLY = "rule_tcp_only"  # reported as the rule "tcp-only" (metrics: rule hits)
FIXED_COUNTERS = (COUNTER_BLOCKED_TCP, COUNTER_BLOCKED_UDP, COUNTER_BLOCKED_OTHER,
                  COUNTER_BLOCKED_REPLIES, COUNTER_QUEUED, COUNTER_DNS_SNOOPED,
                  COUNTER_DNS_QUERIES, COUNTER_GAVE_UP, COUNTER_DEFAULT, COUNTER_HOST_QUEUE_RATE)

SET_USAGE = "usage"  # bytes/packets per app, group, block flag and class
SET_FLOWS = "flows"  # decided flows per app and group
MAP_LEARNED_V4 = "learned_v4"
MAP_LEARNED_V6 = "learned_v6"
EMPTY_TCP_CHAIN = "tcp_without_payload"
DECIDED_FLOWS_CHAIN = "decided_flows"  # before the rules: flows decided in this epoch skip them
SET_RECENT_BLOCKED_V4 = "recent_blocked_v4"
SET_RECENT_BLOCKED_V6 = "recent_blocked_v6"
# Bytes per office host (address . group bits . ct direction): the top talkers (metrics/top_talkers.py).
HOST_BYTES = {4: "host_bytes_v4", 6: "host_bytes_v6"}
DYNAMIC_SETS = (SET_USAGE, SET_FLOWS, MAP_LEARNED_V4, MAP_LEARNED_V6, *HOST_BYTES.values())


def set_app_chain(number: int) -> str:
    """The chain that puts app `number` into the ct mark (the learned maps jump to it)."""
    return f"set_app_{number}"


# Per-host shaping and connection caps, in the same table (compile/qos_rules.py).
REFUSED_COUNTER_PREFIX = "connections_refused_"
RefusedProtocol = Literal["tcp", "udp", "other"]  # bounded: a metrics label
REFUSED_PROTOCOLS: tuple[RefusedProtocol, ...] = ("tcp", "udp", "other")
CONNECTION_CAPS_CHAIN = "connection_caps"  # what a cap does not count returns from it


# Both are named by the group's name (not its number, which the next policy may give another
# group), and the set by its cap too: the table swap keeps them, counts and elements included,
# while the name stays the same (NftTable.kept), and a changed cap is a new set, counted afresh.
# Group names are [a-z0-9_-] (policy/fields.py NAME_PATTERN): nft takes them as they are.
def refused_counter(group_name: str, protocol: RefusedProtocol) -> str:
    return f"{REFUSED_COUNTER_PREFIX}{group_name}_{protocol}"


def connlimit_set_name(group_name: str, cap: int, version: int) -> str:
    return f"connlimit_{group_name}_{cap}_v{version}"


def resolver_set_name(version: int) -> str:
    """The policy's dns.resolvers: their answers may teach (compile/dns_rules.py); connection caps
    do not count DNS to them. Declared only for the IP versions the policy lists resolvers of."""
    return f"dns_resolvers_v{version}"


def host_map_name(direction: Direction, version: int) -> str:
    return f"host_{'up' if direction == 'upload' else 'down'}_v{version}"


def classless_set_name(version: int) -> str:
    return f"hosts_classless_v{version}"


def waiting_set_name(version: int) -> str:
    return f"hosts_waiting_v{version}"


# Several WAN links, in the same table (compile/links.py).
LINK_CHOOSE_CHAIN = "link_choose"
LINK_BALANCE_CHAIN = "link_balance"
LINK_BALANCE_V6_CHAIN = "link_balance_v6"
LINK_LOOKUP_CHAIN = "link_app_lookup"
LINK_CONNECTIONS_COUNTER_PREFIX = "link_connections_"
TUNNEL_OUTER_CHAIN = "tunnel_outer"  # compile/tunnels.py
TUNNEL_ROUTE_CHAIN = "tunnel_route"
LINK_ROUTE_TABLE_BASE = 7300  # routing table 7301.. for link 1..; ip rules at the same priorities


def link_set_chain(number: int) -> str:
    return f"set_link_{number}"


def link_mark_chain(number: int) -> str:
    return f"mark_link_{number}"


def link_pin_chain(index: int) -> str:
    return f"link_pin_{index}"


def link_connections_counter(number: int) -> str:
    """New connections put on link `number` (metrics: gatewayd_link_connections_total)."""
    return f"{LINK_CONNECTIONS_COUNTER_PREFIX}{number}"


def link_route_table(number: int) -> int:
    return LINK_ROUTE_TABLE_BASE + number


def link_rule_priority(number: int) -> int:
    return LINK_ROUTE_TABLE_BASE + number


# --- `netdev gatewayd_guard` and `inet gatewayd_guard`: the LAN guard (compile/guard.py) ---

GUARD_TABLE_NAME = "gatewayd_guard"
NETDEV = "netdev"
INET = "inet"
# Sets of the netdev table, by IP version.
BLOCKLIST = {4: "blocklist_v4", 6: "blocklist_v6"}
SWEEPERS = {4: "sweepers_v4", 6: "sweepers_v6"}  # the blocklisted for a host sweep; the rest scanned ports
BOUND = {4: "bound_v4", 6: "bound_v6"}
BINDINGS = {4: "bindings_v4", 6: "bindings_v6"}
GATEWAY_ADDRESSES = {4: "gateway_v4", 6: "gateway_v6"}
# Counter of the inet table; the drop counters are named by reason (compile/guard.py REASONS).
SYN_PROXY_COUNTER = "syn_proxy_handled"  # not a drop: SYNs and handshakes the proxy answered
# Counter of the netdev table: ARP frames claiming one of the gateway's own addresses (counted
# also as the arp_spoof drop); the daemon answers them with gratuitous ARP (daemon/gateway_arp.py).
GATEWAY_CLAIMS_COUNTER = "gateway_claims"

# --- the NFQUEUE hand-off where the kernel has no native nft `queue` (compile/queue_rule.py) ---

QUEUE_IPTABLES_CHAIN = "GATEWAYD_QUEUE"  # in iptables-nft's `filter` table, jumped to from FORWARD

# --- created and deleted in one transaction to ask the kernel about a feature (apply/features.py) ---

PROBE_TABLE_NAME = "gatewayd_probe"

# --- `inet gatewayd_ha`: the HA takeover hold (compile/ha.py), filled by `gatewayd ha-notify` ---

HA_TABLE_NAME = "gatewayd_ha"
HA_HOLD_SET = "hold"  # the ports (ifname) whose unsynced segments are dropped during a takeover
HA_HOLD_CHAIN = "hold_unsynced"
