"""The iptables-nft `filter` tables the queue rule needs, and removing them again at stop.

iptables-nft creates `table ip filter` / `table ip6 filter` and their FORWARD and
OUTPUT base chains (empty, policy accept) the first time gatewayd's queue rule goes
in. Those tables may also be someone else's (a host firewall using iptables), so the
state before gatewayd touched them is recorded, and at stop only what gatewayd's
own actions created goes, and only while nothing else is in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gatewayd.apply.nft import NftError

FILTER_TABLE = "filter"
# Address family of the nft table each iptables-nft binary writes to.
FAMILY_OF_BINARY = {"iptables-nft": "ip", "ip6tables-nft": "ip6"}


class NftListing(Protocol):
    def query(self, command: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class FilterTableState:
    """Whether a family's filter table existed, and with which chains."""

    exists: bool
    chains: frozenset[str] = frozenset()


def list_filter_table(kernel: NftListing, family: str) -> list[dict[str, Any]]:
    """`nft -j list table FAMILY filter`, or [] when there is no such table."""
    try:
        return kernel.query(f"list table {family} {FILTER_TABLE}")
    except NftError:  # no such table
        return []


def filter_table_state(listing: Iterable[Mapping[str, Any]]) -> FilterTableState:
    items = list(listing)
    if not any("table" in item for item in items):
        return FilterTableState(False)
    return FilterTableState(True, frozenset(item["chain"]["name"] for item in items if "chain" in item))


def cleanup_script(family: str, before: FilterTableState, listing: Iterable[Mapping[str, Any]],
                   created_chains: Iterable[str]) -> str:
    """nft commands removing what gatewayd created in a filter table, as `listing` shows it now.

    A chain goes if gatewayd created it (it is one of `created_chains` and was not there
    before) and it is still empty with policy accept; the whole table goes if gatewayd
    created it and nothing but such chains is left in it.
    """
    items = list(listing)
    if not any("table" in item for item in items):
        return ""
    chains = {item["chain"]["name"]: item["chain"] for item in items if "chain" in item}
    chains_with_rules = {item["rule"]["chain"] for item in items if "rule" in item}
    others = [item for item in items if not {"metainfo", "table", "chain", "rule"} & item.keys()]  # sets, maps...
    ours = set(created_chains) - before.chains
    removable = sorted(name for name, chain in chains.items()
                       if name in ours and name not in chains_with_rules and chain.get("policy", "accept") == "accept")
    if not before.exists and not others and set(removable) == set(chains):
        return f"delete table {family} {FILTER_TABLE}\n"
    return "".join(f"delete chain {family} {FILTER_TABLE} {name}\n" for name in removable)
