"""The nft side of on-demand per-host classes (compile/qos_rules.py): who has classes, who waits.

A limited host without classes is in @hosts_classless_vN and out of the host
maps, so its packets keep the class its group and app give them (its group's
ceiling holds) but not a class of its own that does not exist yet. Once its
classes are made it enters the host maps and leaves the classless and
waiting sets. A removal is preceded by an add in the same transaction, so
removing what is already gone (a reload in between) is not an error; right
after a table swap, when everything is known to be there, plain deletes do.
"""

from __future__ import annotations

from collections.abc import Iterable

from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.apply.set_dump_netlink import SetMissing, SetReader
from gatewayd.compile.host_limits import LimitedHost
from gatewayd.compile.kernel_names import (
    TABLE_FAMILY,
    TABLE_NAME,
    classless_set_name,
    host_map_name,
    waiting_set_name,
)
from gatewayd.compile.tc_tree import HTB_MAJOR


def waiting_hosts(kernel: NftKernel) -> list[str]:
    """Addresses in the waiting sets; [] when the sets are not there (no limited host of that family)."""
    found: list[str] = []
    for version in (4, 6):
        try:
            items = kernel.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {waiting_set_name(version)}")
        except NftError:
            continue
        found.extend(str(element) for item in items for element in item.get("set", {}).get("elem", [])
                     if isinstance(element, str))
    return found


def waiting_hosts_by_netlink(reader: SetReader) -> list[str]:
    """The same as `waiting_hosts`, by a netlink dump of each set: ~30 us instead of ~0.75 ms
    (apply/set_dump_netlink.py), so the verdict loop can read it every 100 ms."""
    found: list[str] = []
    for version in (4, 6):
        try:
            found.extend(element.address for element in
                         reader.elements(TABLE_FAMILY, TABLE_NAME, waiting_set_name(version)))
        except SetMissing:
            continue
    return found


def grant_classes(kernel: NftKernel, hosts: Iterable[LimitedHost], stray: Iterable[str] = ()) -> None:
    """These hosts' classes exist: into the host maps, out of the classless and waiting sets.

    `stray` addresses were waiting but are no longer limited (a reload): they only leave the waiting set.
    """
    script = Script()
    for host in hosts:
        script.map_in(host)
        script.remove(classless_set_name(host.address.version), str(host.address))
        script.remove(waiting_set_name(host.address.version), str(host.address))
    for address in stray:
        script.remove(waiting_set_name(6 if ":" in address else 4), address)
    script.run(kernel)


def settle_after_swap(kernel: NftKernel, made: Iterable[LimitedHost], not_made: Iterable[LimitedHost]) -> None:
    """A new table maps every limited host and lists it as classless: match what tc holds.

    Right after the swap every element is there, so plain deletes do (half the work for 5,000 hosts).
    """
    script = Script(present=True)
    for host in made:
        script.remove(classless_set_name(host.address.version), str(host.address))
    for host in not_made:
        script.map_out(host)
    script.run(kernel)


class Script:
    """Element changes gathered per set, sent as one nft transaction with one command per set and verb."""

    def __init__(self, present: bool = False) -> None:
        self._present = present  # the elements to remove are known to be there: no add first
        self._adds: dict[str, list[str]] = {}
        self._deletes: dict[str, list[str]] = {}

    def map_in(self, host: LimitedHost) -> None:
        for name in self._maps(host):
            self._adds.setdefault(name, []).append(f"{host.address} : {HTB_MAJOR}:{host.minor:x}")

    def map_out(self, host: LimitedHost) -> None:
        for name in self._maps(host):
            self._delete(name, str(host.address), f"{host.address} : {HTB_MAJOR}:{host.minor:x}")

    def remove(self, set_name: str, address: str) -> None:
        self._delete(set_name, address, address)

    def _delete(self, name: str, key: str, element: str) -> None:
        if not self._present:
            self._adds.setdefault(name, []).append(element)
        self._deletes.setdefault(name, []).append(key)

    def run(self, kernel: NftKernel) -> None:
        commands = [f"add element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {', '.join(items)} }}"
                    for name, items in self._adds.items()]
        commands += [f"delete element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {', '.join(items)} }}"
                     for name, items in self._deletes.items()]
        if commands:
            kernel.run("\n".join(commands) + "\n")

    @staticmethod
    def _maps(host: LimitedHost) -> list[str]:
        return [host_map_name(direction, host.address.version) for direction in host.directions]
