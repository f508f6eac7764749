"""Site-to-site tunnels: the outer flow's class on the WAN link that carries it.

The inner packets are office traffic (Policy.office_ports: the classify chain
decides them like the LAN's) and are shaped on the tunnel device by its own
HTB tree at the tunnel's share (compile/tc_tree.py). WireGuard's encrypted
packets leave from the box itself with a fresh skb: no mark, no DSCP and
priority 0, so the enforce chain (forward hook) never sees them. This chain
gives them the tunnel's class on the way out, by the tunnel's UDP port.
"""

from __future__ import annotations

from gatewayd.compile import marks
from gatewayd.compile.kernel_names import TUNNEL_OUTER_CHAIN, TUNNEL_ROUTE_CHAIN
from gatewayd.compile.nftables_model import BaseHook, NftChain, NftRule
from gatewayd.compile.numbering import Numbering
from gatewayd.compile.tc_tree import HTB_MAJOR
from gatewayd.policy.model import Policy

TUNNEL_OUTER_PRIORITY = 0  # postrouting, filter: after routing picked the WAN link
TUNNEL_ROUTE_PRIORITY = -150  # output, route: before gatewayd's output chains clear its mark bits


def compile_tunnels(policy: Policy, numbering: Numbering) -> tuple[NftChain, ...]:
    if not policy.tunnels:
        return ()
    links = {link.name: link for link in policy.wan_links()}
    rules = []
    for tunnel in policy.tunnels:
        wan = links[tunnel.over].interface
        priority = f"{HTB_MAJOR}:{numbering.tc_minor(tunnel.qos_class):x}"
        for direction in ("sport", "dport"):
            rules.append(NftRule(f'oifname "{wan}" udp {direction} {tunnel.port} meta priority set {priority}',
                                 comment=f"tunnel {tunnel.name}: outer flow in class {tunnel.qos_class}"))
    chains = [NftChain(TUNNEL_OUTER_CHAIN, tuple(rules), BaseHook("postrouting", TUNNEL_OUTER_PRIORITY),
                       comment="the encrypted packets of site-to-site tunnels, by their UDP port")]
    if policy.multi_link:
        chains.append(_outer_route_chain(policy, numbering))
    return tuple(chains)


def _outer_route_chain(policy: Policy, numbering: Numbering) -> NftChain:
    """With several links the outer flow must leave by the tunnel's link: its packets get that
    link's routing mark in a route chain, which makes the kernel route them again (the tunnel's
    own fwmark setting can stay 0)."""
    numbers = numbering.links.numbers
    keep = 0xFFFFFFFF & ~marks.LINK_MASK
    rules = tuple(
        NftRule(f"udp sport {tunnel.port} meta mark set meta mark & 0x{keep:08x} | "
                f"0x{marks.link_bits(numbers[tunnel.over]):08x}", comment=f"tunnel {tunnel.name} over {tunnel.over}")
        for tunnel in policy.tunnels)
    return NftChain(TUNNEL_ROUTE_CHAIN, rules, BaseHook("output", TUNNEL_ROUTE_PRIORITY, kind="route"),
                    comment="tunnels' outer flows leave by their own link")
