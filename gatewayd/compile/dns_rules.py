"""The kernel side of DNS learning: which lookups the classifier sees, and who it hears them from.

A learned address decides every office flow to it, so only answers nobody on
the LAN can make up may teach (classify/dns_learning.py). The kernel knows
what the classifier cannot, who really sent a packet, and tells it in the
packet mark (compile/marks.py):

  * the policy's `dns.resolvers` (sets dns_resolvers_v4/_v6, also what
    connection caps leave uncounted): in the forward hook, a query to one of
    them (UDP or TCP port 53, original direction) is queued so the classifier
    can remember it, and its answers are queued with RESOLVER_ANSWER; the
    classifier learns from an answer only if it matches a remembered query of
    its flow (id, name, type). Answers from anyone else are not queued for
    learning at all (cheaper too); should one reach the classifier as the
    first packets of an undecided flow, it carries no origin bit and teaches
    nothing;
  * the router's own resolver (dnsmasq, unbound...): its answers to the LAN
    leave through the output hook and are queued with ROUTER_ANSWER. They are
    made on this box, so nothing on the LAN can forge one, and they teach
    without a query seen (the queries reach the input hook, which has no
    queue rule).

Both directions of a lookup flow are queued for its first DNS_MAX_PACKETS
packets only (a stub's lookup is 2-4 packets; a long-lived TCP or forwarder
flow stops teaching after that, it does not stop working), and TCP segments
without payload never are. Every queued packet is accepted, and the queue
rule's bypass lets lookups through when the daemon is down.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gatewayd.compile import marks
from gatewayd.compile.kernel_names import (
    COUNTER_DNS_QUERIES,
    COUNTER_DNS_SNOOPED,
    EMPTY_TCP_CHAIN,
    resolver_set_name,
)
from gatewayd.compile.nftables_model import BaseHook, NftChain, NftRule, NftSet
from gatewayd.policy.model import Policy

DNS_MAX_PACKETS = 64  # per lookup flow, both directions: what the classifier sees of it
QUERY_CHAIN = "dns_query"
ANSWER_CHAIN = "dns_answer"
_FAMILIES = ((4, "ip", "ipv4_addr"), (6, "ip6", "ipv6_addr"))


def _hexmark(value: int) -> str:
    return f"0x{value:08x}"


@dataclass
class DnsRules:
    sets: list[NftSet] = field(default_factory=list)
    classify: list[NftRule] = field(default_factory=list)  # in the classify chain, before "decided: return"
    chains: list[NftChain] = field(default_factory=list)


def compile_dns_rules(policy: Policy, lan_interfaces: str, classify_priority: int,
                      enforce_priority: int) -> DnsRules:
    """`lan_interfaces`: the nft set of LAN interface names, e.g. `{ "lan0" }`."""
    rules = DnsRules()
    for version, family, key_type in _FAMILIES:
        resolvers = tuple(str(a) for a in policy.dns.resolvers if a.version == version)
        if not resolvers:
            continue
        name = resolver_set_name(version)
        rules.sets.append(NftSet(name, key_type, elements=resolvers, comment="the policy's dns.resolvers"))
        lookup = f"meta l4proto {{ tcp, udp }} ct packets <= {DNS_MAX_PACKETS}"
        rules.classify.append(NftRule(
            f"ct direction original {lookup} th dport 53 {family} daddr @{name} goto {QUERY_CHAIN}",
            comment="a lookup to a named resolver: the classifier remembers the query"))
        rules.classify.append(NftRule(
            f"ct direction reply {lookup} th sport 53 {family} saddr @{name} goto {ANSWER_CHAIN}",
            comment="its answer: may teach, if it matches a remembered query"))
    if rules.classify:
        queue = marks.QUEUE_REQUEST
        answer = marks.QUEUE_REQUEST | marks.FROM_SERVER | marks.RESOLVER_ANSWER
        for chain, counter, bits in ((QUERY_CHAIN, COUNTER_DNS_QUERIES, queue),
                                     (ANSWER_CHAIN, COUNTER_DNS_SNOOPED, answer)):
            rules.chains.append(NftChain(chain, (
                NftRule(f"meta l4proto tcp jump {EMPTY_TCP_CHAIN}"),
                NftRule(f"counter name {counter} meta mark set meta mark | {_hexmark(bits)}"),
            )))
    rules.chains.extend(_router_resolver_chains(lan_interfaces, classify_priority, enforce_priority))
    return rules


def _router_resolver_chains(lan_interfaces: str, classify_priority: int, enforce_priority: int) -> list[NftChain]:
    """Answers the router's own resolver sends to the office leave through the output hook, not forward."""
    router_answer = marks.QUEUE_REQUEST | marks.FROM_SERVER | marks.ROUTER_ANSWER
    lan_out = f"oifname {lan_interfaces}"
    return [
        NftChain("local_dns_answers", tuple(
            NftRule(f"{lan_out} {proto} sport 53 ct packets <= {DNS_MAX_PACKETS} "
                    f"counter name {COUNTER_DNS_SNOOPED} meta mark set meta mark | {_hexmark(router_answer)}")
            for proto in ("udp", "tcp")), BaseHook("output", classify_priority)),
        NftChain("local_clear_mark", (
            NftRule(f"meta mark & {_hexmark(marks.GATEWAYD_MASK)} != 0 "
                    f"meta mark set meta mark & {_hexmark(marks.OTHERS_MASK)}",
                    comment="leave the packet mark as we found it"),
        ), BaseHook("output", enforce_priority)),
    ]
