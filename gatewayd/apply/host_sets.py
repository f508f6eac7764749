"""The two nft sets behind on-demand per-host classes (compile/qos_rules.py): read and update them.

@hosts_waiting_vN holds limited hosts the kernel saw before their classes
existed; @hosts_classless_vN holds those whose classes are not made. Once the
classes are made, an address leaves both. Each removal is preceded by an add
in the same transaction, so removing an address that is already gone (a
reload in between) is not an error.
"""

from __future__ import annotations

from collections.abc import Iterable

from gatewayd.apply.nft import TABLE_FAMILY, TABLE_NAME, NftError, NftKernel
from gatewayd.compile.qos_rules import classless_set_name, waiting_set_name
from gatewayd.policy.model import IPAddress


def waiting_hosts(kernel: NftKernel) -> list[str]:
    """Addresses in the waiting sets; [] when the sets are not there (no limited host of that family)."""
    found = []
    for version in (4, 6):
        try:
            items = kernel.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {waiting_set_name(version)}")
        except NftError:
            continue
        found.extend(str(element) for item in items for element in item.get("set", {}).get("elem", [])
                     if isinstance(element, str))
    return found


def forget_hosts(kernel: NftKernel, addresses: Iterable[IPAddress | str], waiting: bool = True) -> None:
    """Take the addresses out of the classless sets (and the waiting sets): their classes exist."""
    by_version: dict[int, list[str]] = {4: [], 6: []}
    for address in addresses:
        by_version[4 if ":" not in str(address) else 6].append(str(address))
    script = []
    for version, members in by_version.items():
        if not members:
            continue
        body = ", ".join(members)
        names = [classless_set_name(version)] + ([waiting_set_name(version)] if waiting else [])
        for name in names:
            script.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {body} }}")
            script.append(f"delete element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {body} }}")
    if script:
        kernel.run("\n".join(script) + "\n")
