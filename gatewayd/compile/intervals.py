"""Disjoint intervals for nft interval sets and maps, and a check that a table has them.

nft refuses a whole transaction ("conflicting intervals", "File exists") when
two elements of one interval set or map overlap, and a policy is full of
legitimate overlaps: a host inside its department's subnet, an admin's /32
inside a cloud provider's /16. Builders make their elements disjoint here,
as the classifier reads the same data (classify/tables.py: the most specific
network wins, then the earlier entry; identical values simply merge), and
`overlapping_elements` proves it on the finished table without nft or root,
so `gatewayd check` finds what the kernel would refuse.
"""

from __future__ import annotations

import bisect
import ipaddress
from dataclasses import dataclass
from itertools import pairwise

from gatewayd.compile.nftables_model import NftSet, NftTable
from gatewayd.policy.model import IPNetwork


class TakenIntervals:
    """Whole-number intervals already given to someone, kept sorted and merged.

    `take` hands out the parts of a new interval nobody has yet, at the cost of a
    bisect plus the intervals it swallows: cutting each new interval against every
    earlier one was quadratic (an app with 100,000 ports or addresses never rendered).
    """

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def take(self, first: int, last: int) -> list[tuple[int, int]]:
        starts, ends = self.starts, self.ends
        low = bisect.bisect_left(ends, first)  # the first taken interval that ends at or after `first`
        high = low
        cursor = first
        free: list[tuple[int, int]] = []
        while high < len(starts) and starts[high] <= last:
            if starts[high] > cursor:
                free.append((cursor, starts[high] - 1))
            cursor = max(cursor, ends[high] + 1)
            high += 1
        if cursor <= last:
            free.append((cursor, last))
        # The swallowed intervals and the new one become one taken interval.
        starts[low:high] = [min(first, starts[low]) if high > low else first]
        ends[low:high] = [max(last, ends[high - 1]) if high > low else last]
        return free


def disjoint_networks(pairs: list[tuple[IPNetwork, str]]) -> list[tuple[IPNetwork, str]]:
    """Make (network, app) pairs non-overlapping; the most specific network wins.

    nft interval maps refuse overlapping elements, and an admin's 203.0.113.20/32
    for ERP inside a cloud provider's /16 must still mean ERP. Each network keeps the
    addresses no more specific one took, as the fewest CIDR blocks.
    """
    by_specificity = sorted(pairs, key=lambda p: (p[0].version, -p[0].prefixlen))
    taken = {4: TakenIntervals(), 6: TakenIntervals()}
    result: list[tuple[IPNetwork, str]] = []
    for network, app in by_specificity:
        first, last = int(network.network_address), int(network.broadcast_address)
        free = taken[network.version].take(first, last)
        if free == [(first, last)]:  # nothing more specific inside: the usual case, kept as it is
            result.append((network, app))
            continue
        address = type(network.network_address)
        for low, high in free:
            blocks = ipaddress.summarize_address_range(address(low), address(high))
            result.extend((block, app) for block in blocks)
    return _merge_neighbours(sorted(result, key=lambda p: (p[0].version, int(p[0].network_address))))


def _merge_neighbours(pairs: list[tuple[IPNetwork, str]]) -> list[tuple[IPNetwork, str]]:
    """Adjacent blocks of one app as the fewest blocks again: an app's own /32 inside its /24 cut
    the /24 into 8 pieces that all mean the same."""
    runs: list[tuple[IPNetwork, IPNetwork, str]] = []  # first block, last block, app
    for network, app in pairs:
        if runs:
            first, last, previous = runs[-1]
            if (previous == app and last.version == network.version
                    and int(last.broadcast_address) + 1 == int(network.network_address)):
                runs[-1] = (first, network, app)
                continue
        runs.append((network, network, app))
    merged: list[tuple[IPNetwork, str]] = []
    for first, last, app in runs:
        if first is last:
            merged.append((first, app))
        else:
            merged.extend((block, app) for block in ipaddress.summarize_address_range(
                first.network_address, last.broadcast_address))
    return merged


def disjoint_port_ranges(entries: list[tuple[str, int, int, str]]) -> list[tuple[str, int, int, str]]:
    """Make (proto, first, last, target) port ranges non-overlapping, as the classifier's port
    table reads them: the narrower range wins a port, then the earlier entry (catalog order)."""
    taken: dict[str, TakenIntervals] = {}
    result: list[tuple[str, int, int, str]] = []
    for proto, first, last, target in sorted(entries, key=lambda e: e[2] - e[1]):
        free = taken.setdefault(proto, TakenIntervals()).take(first, last)
        result.extend((proto, low, high, target) for low, high in free)
    return sorted(result)


@dataclass(frozen=True)
class AddressPort:
    """One catalog entry of an app with addresses and ports: a network, one port range, its verdict."""

    network: IPNetwork
    protocol: str
    first: int
    last: int
    target: str


def disjoint_address_ports(entries: list[AddressPort]) -> list[AddressPort]:
    """Make (network . protocol . ports) entries non-overlapping, as the classifier reads them: at each
    address the most specific network whose ports hold the port wins, then the earlier entry.

    The address space is cut at every network's edges; within each piece the entries covering
    it hand out their ports in that order, and neighbouring pieces that hand out the same
    ports to the same targets are one block again (an app's /32 inside its own /24 vanishes).
    """
    order = {id(entry): index for index, entry in enumerate(entries)}
    result: list[AddressPort] = []
    for version in (4, 6):
        family = [e for e in entries if e.network.version == version]
        edges = sorted({int(e.network.network_address) for e in family} |
                       {int(e.network.broadcast_address) + 1 for e in family})
        pieces: list[tuple[int, int, tuple[tuple[str, int, int, str], ...]]] = []
        by_start = sorted(family, key=lambda e: int(e.network.network_address))
        active: list[AddressPort] = []
        next_entry = 0
        for low, high in pairwise(edges):
            while next_entry < len(by_start) and int(by_start[next_entry].network.network_address) <= low:
                active.append(by_start[next_entry])
                next_entry += 1
            active = [e for e in active if int(e.network.broadcast_address) >= low]
            if not active:
                continue
            taken: dict[str, TakenIntervals] = {}
            owned: list[tuple[str, int, int, str]] = []
            for entry in sorted(active, key=lambda e: (-e.network.prefixlen, order[id(e)])):
                free = taken.setdefault(entry.protocol, TakenIntervals()).take(entry.first, entry.last)
                owned.extend((entry.protocol, first, last, entry.target) for first, last in free)
            pieces.append((low, high - 1, _joined_ports(owned)))
        result.extend(_blocks(pieces, version))
    return result


def _joined_ports(owned: list[tuple[str, int, int, str]]) -> tuple[tuple[str, int, int, str], ...]:
    """Adjacent port ranges of one protocol and target as one (tcp/443 and tcp/400-500 of one app)."""
    joined: list[tuple[str, int, int, str]] = []
    for protocol, first, last, target in sorted(owned):
        if joined and joined[-1][0] == protocol and joined[-1][3] == target and joined[-1][2] + 1 == first:
            joined[-1] = (protocol, joined[-1][1], last, target)
        else:
            joined.append((protocol, first, last, target))
    return tuple(joined)


def _blocks(pieces: list[tuple[int, int, tuple[tuple[str, int, int, str], ...]]],
            version: int) -> list[AddressPort]:
    """Join adjacent pieces that own the same ports, and write each run as CIDR blocks."""
    address = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    runs: list[tuple[int, int, tuple[tuple[str, int, int, str], ...]]] = []
    for low, high, owned in pieces:
        if runs and runs[-1][1] + 1 == low and runs[-1][2] == owned:
            runs[-1] = (runs[-1][0], high, owned)
        else:
            runs.append((low, high, owned))
    blocks: list[AddressPort] = []
    for low, high, owned in runs:
        for block in ipaddress.summarize_address_range(address(low), address(high)):
            blocks.extend(AddressPort(block, protocol, first, last, target) for protocol, first, last, target in owned)
    return blocks


# --- the check: no two elements of an interval set or map overlap ---

Interval = tuple[int, int]


def _key_parts(element: str) -> tuple[tuple[str, ...], tuple[Interval, ...]]:
    """An element's key: its text parts (protocol names: equal or disjoint) and one interval per
    network or port range, in order."""
    texts: list[str] = []
    intervals: list[Interval] = []
    for part in element.split(" : ", 1)[0].split(" . "):
        part = part.strip()
        try:
            network = ipaddress.ip_network(part, strict=False)
        except ValueError:
            first, dash, last = part.partition("-")
            if first.isdigit() and (not dash or last.isdigit()):
                intervals.append((int(first), int(last if dash else first)))
            else:
                texts.append(part)
            continue
        family = network.version << 128  # v4 and v6 never overlap
        intervals.append((family | int(network.network_address), family | int(network.broadcast_address)))
    return tuple(texts), tuple(intervals)


def _overlap(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> bool:
    return all(x[0] <= y[1] and y[0] <= x[1] for x, y in zip(a, b, strict=True))


def overlapping_set_elements(nft_set: NftSet) -> list[tuple[str, str]]:
    """Pairs of elements of an interval set or map that overlap (nft would refuse the table)."""
    if "interval" not in nft_set.flags:
        return []
    groups: dict[tuple[str, ...], list[tuple[tuple[Interval, ...], str]]] = {}
    for element in nft_set.elements:
        texts, intervals = _key_parts(element)
        if intervals:
            groups.setdefault(texts, []).append((intervals, element))
    pairs: list[tuple[str, str]] = []
    for keyed in groups.values():
        keyed.sort()
        active: list[tuple[tuple[Interval, ...], str]] = []
        for key, element in keyed:  # a sweep on the first interval; the others compared within it
            active = [(k, e) for k, e in active if k[0][1] >= key[0][0]]
            pairs.extend((other, element) for other_key, other in active if _overlap(other_key, key))
            active.append((key, element))
    return pairs


def overlapping_elements(table: NftTable) -> list[str]:
    """One line per interval set or map of `table` whose elements overlap, naming the first pair."""
    problems = []
    for nft_set in table.sets:
        pairs = overlapping_set_elements(nft_set)
        if pairs:
            first, second = pairs[0]
            problems.append(f"{table.family} {table.name} set {nft_set.name}: {first!r} overlaps {second!r}"
                            + (f" (and {len(pairs) - 1} more)" if len(pairs) > 1 else ""))
    return problems
