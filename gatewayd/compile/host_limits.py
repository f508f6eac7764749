"""Which addresses get a per-host HTB class, and the slot (tc minor) each one keeps.

A group with `per_host` limits (or host exceptions) gives every address of
its networks and ranges a class of its own, in each direction it limits. An
address sits in the first such group (file order) that holds it.

Slots are stable across reloads: an address keeps its slot while it stays
limited, so a reload that changes a few hosts changes a few classes, not all
of them (apply/tc.py only touches classes whose parameters differ).
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.policy.bandwidth import MAX_LIMITED_HOSTS, host_addresses, limited_directions
from gatewayd.policy.model import Direction, IPAddress, Policy

# tc minors 0x1000..0xFFFF are per-host classes: minor = HOST_MINOR_BASE + slot.
HOST_MINOR_BASE = 0x1000
MAX_SLOT = 0xFFFF - HOST_MINOR_BASE


@dataclass(frozen=True)
class LimitedHost:
    address: IPAddress
    group: str
    slot: int
    directions: tuple[Direction, ...]

    @property
    def minor(self) -> int:
        return HOST_MINOR_BASE + self.slot


@dataclass(frozen=True)
class HostSlots:
    hosts: tuple[LimitedHost, ...] = ()

    def by_direction(self, direction: Direction) -> list[LimitedHost]:
        return [host for host in self.hosts if direction in host.directions]

    def in_group(self, group: str, direction: Direction) -> list[LimitedHost]:
        return [host for host in self.hosts if host.group == group and direction in host.directions]

    @staticmethod
    def for_policy(policy: Policy, previous: HostSlots | None = None) -> HostSlots:
        wanted: dict[IPAddress, tuple[str, tuple[Direction, ...]]] = {}
        for name, group in policy.groups.items():
            directions = limited_directions(group)
            if not directions:
                continue
            for address in host_addresses(group):
                wanted.setdefault(address, (name, directions))
        if len(wanted) > min(MAX_LIMITED_HOSTS, MAX_SLOT + 1):
            raise ValueError(f"{len(wanted)} hosts with per-host limits, more than {MAX_LIMITED_HOSTS}")
        kept = {h.address: h.slot for h in (previous.hosts if previous else ()) if h.address in wanted}
        used = set(kept.values())
        next_free = 0
        hosts = []
        for address, (group_name, directions) in wanted.items():
            slot = kept.get(address)
            if slot is None:
                while next_free in used:
                    next_free += 1
                slot = next_free
                used.add(slot)
            hosts.append(LimitedHost(address, group_name, slot, directions))
        return HostSlots(tuple(hosts))
