"""What one LAN host may hold in the classifier: tracked flows and buffered bytes.

A host that opens thousands of flows and never finishes their ClientHellos
would otherwise fill the flow table (evicting everyone else's flows) and hold
16 KiB of reassembly buffer per flow. The ledger counts, per source address
and in total, the flows tracked and the payload bytes buffered, so the engine
can make the abuser pay first: its own oldest flows go when it is over its
share, and the heaviest host's oldest flow goes when the table is full.

Every operation is O(1): ordered dicts give "oldest" without a scan, and hosts
are kept in buckets by flow count, so the heaviest is the top bucket. (OrderedDict,
not dict: a plain dict's first key after many deletions at the front is found by
skipping every deleted slot, which makes "evict the oldest" linear.)

A host is one address, IPv6 included: an office LAN is often a single /64, so
a per-/64 budget would make every IPv6 host pay for one abuser. A host that
rotates addresses gets a budget per address; the total budget still bounds
memory, and the LAN guard's IP-MAC bindings are what stops address rotation.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

FlowKey = tuple[int, bytes, int, bytes, int]

MIB = 1024 * 1024


@dataclass(frozen=True)
class FlowBudget:
    """Limits on classifier memory.

    A real ClientHello fits one or two segments and waits about one round trip
    for the rest, so honest traffic buffers a few KiB per host at any moment.
    The total (32 MiB) still holds 16,000 half-received 2 KiB hellos at once; a
    host's share is an eighth of the total and of the flow table, so at least
    eight hosts must misbehave together before anyone else's flows are touched,
    and even then the globally oldest buffers go first, which are theirs (an
    honest hello completes within a round trip).
    """

    total_bytes: int = 32 * MIB
    host_bytes: int = 4 * MIB
    host_flows: int = 8192

    @classmethod
    def for_table(cls, max_flows: int) -> FlowBudget:
        """The default budget, with a host's flow share an eighth of a table of `max_flows`."""
        return cls(host_flows=max(1, max_flows // 8))


class _Host:
    __slots__ = ("address", "buffered_bytes", "buffering", "flows")

    def __init__(self, address: bytes) -> None:
        self.address = address  # the one bytes object its flows share (see HostLedger.shared_address)
        self.flows: OrderedDict[FlowKey, None] = OrderedDict()  # tracked flows, least recently active first
        self.buffering: OrderedDict[FlowKey, None] = OrderedDict()  # holding bytes, earliest to start first
        self.buffered_bytes = 0


class HostLedger:
    """Per-host and total accounting of tracked flows and buffered bytes."""

    def __init__(self) -> None:
        self._hosts: dict[bytes, _Host] = {}
        self._buffering: OrderedDict[FlowKey, bytes] = OrderedDict()  # every buffering flow -> its host
        self.buffered_bytes = 0
        # flow count -> hosts with that many flows, so the heaviest host is found without a scan
        self._by_count: dict[int, OrderedDict[bytes, None]] = {}
        self._top_count = 0

    # --------------------------------------------------------------- flows

    def add_flow(self, host: bytes, key: FlowKey) -> int:
        """Track a new flow of `host`; returns how many flows the host has now."""
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = _Host(host)
        entry.flows[key] = None
        count = len(entry.flows)
        self._move_bucket(host, count - 1, count)
        return count

    def shared_address(self, host: bytes) -> bytes:
        """`host` as the bytes object the ledger already holds for it, if it has flows: a new
        flow that keeps this one instead of its packet's copy saves ~40 bytes."""
        entry = self._hosts.get(host)
        return host if entry is None else entry.address

    def touch(self, host: bytes, key: FlowKey) -> None:
        """The flow saw a packet: it becomes the host's most recently active."""
        self._hosts[host].flows.move_to_end(key)

    def remove_flow(self, host: bytes, key: FlowKey, held_bytes: int) -> None:
        """Stop tracking a flow that held `held_bytes` of buffer."""
        if held_bytes:
            self.set_held(host, key, held_bytes, 0)
        entry = self._hosts[host]
        count = len(entry.flows)
        del entry.flows[key]
        self._move_bucket(host, count, count - 1)
        if not entry.flows:
            del self._hosts[host]

    def oldest_flow(self, host: bytes) -> FlowKey:
        return next(iter(self._hosts[host].flows))

    def heaviest_host(self) -> bytes:
        """A host with the most tracked flows (of equals, the one that got there first)."""
        return next(iter(self._by_count[self._top_count]))

    def host_count(self) -> int:
        return len(self._hosts)

    def hosts(self) -> list[bytes]:
        """Every host with tracked flows (a copy: forgetting a host's last flow removes it)."""
        return list(self._hosts)

    def has_flows(self, host: bytes) -> bool:
        return host in self._hosts

    def _move_bucket(self, host: bytes, old_count: int, new_count: int) -> None:
        by_count = self._by_count
        if old_count:
            bucket = by_count[old_count]
            del bucket[host]
            if not bucket:
                del by_count[old_count]
                if self._top_count == old_count and new_count < old_count:
                    self._top_count = new_count  # the host moved one bucket down: that bucket is not empty
        if new_count:
            if new_count not in by_count:
                by_count[new_count] = OrderedDict()
            by_count[new_count][host] = None
            self._top_count = max(self._top_count, new_count)

    # --------------------------------------------------------------- bytes

    def set_held(self, host: bytes, key: FlowKey, old_bytes: int, new_bytes: int) -> None:
        """A flow's buffers went from `old_bytes` to `new_bytes`."""
        entry = self._hosts[host]
        entry.buffered_bytes += new_bytes - old_bytes
        self.buffered_bytes += new_bytes - old_bytes
        if not old_bytes and new_bytes:
            entry.buffering[key] = None
            self._buffering[key] = host
        elif old_bytes and not new_bytes:
            del entry.buffering[key]
            del self._buffering[key]

    def host_buffered_bytes(self, host: bytes) -> int:
        entry = self._hosts.get(host)
        return entry.buffered_bytes if entry is not None else 0

    def oldest_buffering_of(self, host: bytes) -> FlowKey:
        return next(iter(self._hosts[host].buffering))

    def oldest_buffering(self) -> FlowKey:
        return next(iter(self._buffering))
