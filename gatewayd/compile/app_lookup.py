"""The kernel's own app lookups: a server address (and port) the catalog lists or DNS taught.

Shared by the classify chain (compile/ruleset.py), which decides a flow's app on
its first packets, and by the link choice (compile/links.py), which needs the
app already on a connection's first packet to pin it to a line. Each lookup is
a verdict map whose elements `goto set_app_N`.
"""

from __future__ import annotations

from gatewayd.compile.kernel_names import MAP_LEARNED_V4, MAP_LEARNED_V6
from gatewayd.compile.nftables_model import NftRule


def app_lookup_rules() -> list[NftRule]:
    # address + port first, then the catalog's networks, then DNS-learned names: the
    # catalog and the policy's own addresses are never overridden by an answer (e.g.
    # Meta's STUN port is a WhatsApp call whatever name the address was looked up
    # under); the classifier checks in the same order.
    return [
        NftRule("ct direction original ip daddr . meta l4proto . th dport vmap @app_address_ports_v4"),
        NftRule("ct direction original ip6 daddr . meta l4proto . th dport vmap @app_address_ports_v6"),
        NftRule("ct direction original ip daddr vmap @app_addresses_v4"),
        NftRule("ct direction original ip6 daddr vmap @app_addresses_v6"),
        NftRule(f"ct direction original ip daddr vmap @{MAP_LEARNED_V4}"),
        NftRule(f"ct direction original ip6 daddr vmap @{MAP_LEARNED_V6}"),
    ]
