"""Turn group members and app evidence into nft set elements."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from gatewayd.policy.model import AddressRange, Group, IPNetwork


def networks_of_range(address_range: AddressRange) -> list[IPNetwork]:
    return list(ipaddress.summarize_address_range(address_range.first, address_range.last))


def collapsed(networks: Iterable[IPNetwork]) -> list[str]:
    """Networks of one family as the fewest disjoint blocks: an interval set refuses overlaps, and
    a set only means its union."""
    return [str(n) for n in ipaddress.collapse_addresses(networks)]  # type: ignore[type-var]  # one family, as said


def split_by_family(networks: Iterable[IPNetwork]) -> tuple[list[str], list[str]]:
    """Collapse overlapping networks (nft interval sets refuse overlaps) and split v4/v6."""
    networks = list(networks)
    return collapsed(n for n in networks if n.version == 4), collapsed(n for n in networks if n.version == 6)


def group_networks(group: Group) -> list[IPNetwork]:
    networks: list[IPNetwork] = list(group.networks)
    for address_range in group.ranges:
        networks.extend(networks_of_range(address_range))
    return networks


class SourceSets:
    """The v4, v6 and MAC elements of one or more groups together."""

    def __init__(self, groups: Iterable[Group]) -> None:
        groups = list(groups)
        networks: list[IPNetwork] = []
        macs: set[str] = set()
        for group in groups:
            networks.extend(group_networks(group))
            macs.update(group.macs)
        self.v4, self.v6 = split_by_family(networks)
        self.macs = sorted(macs)

    def __bool__(self) -> bool:
        return bool(self.v4 or self.v6 or self.macs)
