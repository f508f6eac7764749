"""What the guard's tables need from the running system, as `add element` commands.

Read just before the swap and sent in the same transaction:
  * the gateway's own LAN addresses (an ARP or IP frame from the LAN that
    claims one of them is spoofed);
  * with `learn: true`, IP-MAC pairs from the neighbour table, plus the pairs
    learned earlier (a host that went quiet and left the neighbour table stays
    bound; the first pair learned wins, so a later poisoner cannot re-bind it);
  * the blocklist, each host with the time it has left (and whether it swept
    hosts rather than scanned ports), so a reload neither frees a scanner nor
    extends its sentence.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass
from typing import Any

from gatewayd.apply import rtnl_dump
from gatewayd.apply.nft import NftError, NftKernel
from gatewayd.apply.set_dump_netlink import SetElement, SetMissing, SetReader
from gatewayd.compile.guard import REASON_HOST_SWEEP, REASON_PORT_SCAN, CompiledGuard
from gatewayd.compile.kernel_names import (
    BINDINGS,
    BLOCKLIST,
    BOUND,
    GATEWAY_ADDRESSES,
    GUARD_TABLE_NAME,
    NETDEV,
    SWEEPERS,
)
from gatewayd.policy.model import Binding, IPAddress

log = logging.getLogger("gatewayd.guard")

# Neighbour states whose link-layer address the kernel has confirmed or been told.
NUD_REACHABLE, NUD_STALE, NUD_DELAY, NUD_PROBE, NUD_NOARP, NUD_PERMANENT = 0x02, 0x04, 0x08, 0x10, 0x40, 0x80
TRUSTED_STATES = NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT


@dataclass(frozen=True)
class BlockedHost:
    address: str
    expires_seconds: int
    reason: str = REASON_PORT_SCAN  # or REASON_HOST_SWEEP: what put it on the blocklist


def _elem_value(element: Any) -> Any:
    return element.get("elem", {}).get("val") if isinstance(element, dict) and "elem" in element else element


def read_set(kernel: NftKernel, set_name: str) -> list[Any]:
    """The raw JSON elements of one guard set; [] when the table or set is not there."""
    try:
        items = kernel.query(f"list set {NETDEV} {GUARD_TABLE_NAME} {set_name}")
    except NftError:
        return []
    return [e for item in items for e in item.get("set", {}).get("elem", [])]


def read_blocklist(kernel: NftKernel) -> list[BlockedHost]:
    hosts = []
    for version in (4, 6):
        sweepers = {host.address for host in _timed_elements(kernel, SWEEPERS[version])}
        for host in _timed_elements(kernel, BLOCKLIST[version]):
            reason = REASON_HOST_SWEEP if host.address in sweepers else REASON_PORT_SCAN
            hosts.append(BlockedHost(host.address, host.expires_seconds, reason))
    return hosts


def blocklist_by_netlink(reader: SetReader) -> list[BlockedHost]:
    """The same as `read_blocklist`, by a netlink dump of each set (apply/set_dump_netlink.py): four
    libnftables listings cost the verdict loop ~1-3 ms every second, these four dumps ~0.1 ms."""
    hosts = []
    for version in (4, 6):
        blocked = _dumped(reader, BLOCKLIST[version])
        # A sweeper is always on the blocklist too: with none blocked, no dump of the sweepers.
        sweepers = {element.address for element in _dumped(reader, SWEEPERS[version])} if blocked else set()
        for element in blocked:
            reason = REASON_HOST_SWEEP if element.address in sweepers else REASON_PORT_SCAN
            left_ms = element.expires_ms if element.expires_ms is not None else element.timeout_ms or 0
            hosts.append(BlockedHost(element.address, left_ms // 1000, reason))  # whole seconds, as nft prints
    return hosts


def _dumped(reader: SetReader, set_name: str) -> list[SetElement]:
    try:
        return reader.elements(NETDEV, GUARD_TABLE_NAME, set_name)
    except SetMissing:
        return []


def _timed_elements(kernel: NftKernel, set_name: str) -> list[BlockedHost]:
    found = []
    for element in read_set(kernel, set_name):
        inner = element.get("elem", {}) if isinstance(element, dict) else {}
        if "val" in inner:
            found.append(BlockedHost(str(inner["val"]), int(inner.get("expires", inner.get("timeout", 0)))))
    return found


def read_kernel_bindings(kernel: NftKernel) -> list[Binding]:
    found = []
    for version in (4, 6):
        for element in read_set(kernel, BINDINGS[version]):
            value = _elem_value(element)
            pair = value.get("concat") if isinstance(value, dict) else None
            if pair and len(pair) == 2:
                found.append(Binding(ipaddress.ip_address(pair[0]), str(pair[1]).lower()))
    return found


def read_neighbours(lan: tuple[str, ...]) -> list[Binding]:
    try:
        return _neighbours(lan)
    except Exception as exc:  # netlink trouble must not stop the apply; the policy's own pairs still hold
        log.warning("event=neighbour_read_failed error=%r learned=0", str(exc))
        return []


def _neighbours(lan: tuple[str, ...]) -> list[Binding]:
    found = []
    for name in lan:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            continue
        for neighbour in rtnl_dump.neighbours(index):
            if not neighbour.state & TRUSTED_STATES:
                continue
            ip = neighbour.address
            if ip.is_multicast or (ip.is_link_local and ip.version == 6):
                continue  # link-local v6 is not forwarded; binding it would only add churn
            found.append(Binding(ip, neighbour.mac))
    return found


def read_gateway_addresses(lan: tuple[str, ...]) -> list[IPAddress]:
    try:
        return _gateway_addresses(lan)
    except Exception as exc:  # same reasoning: the rest of the guard still applies
        log.warning("event=address_read_failed error=%r", str(exc))
        return []


def _gateway_addresses(lan: tuple[str, ...]) -> list[IPAddress]:
    found: list[IPAddress] = []
    for name in lan:
        try:
            index = socket.if_nametoindex(name)
        except OSError:
            continue
        found.extend(rtnl_dump.interface_addresses(index))
    return found


def learned_bindings(guard: CompiledGuard, previous: CompiledGuard | None, kernel: NftKernel,
                     lan: tuple[str, ...]) -> list[Binding]:
    """Pairs to bind besides the policy's own: earlier learned ones first, then new neighbours."""
    bindings = guard.security.bindings if guard.security else None
    if bindings is None or not bindings.learn:
        return []
    static = {b.address for b in bindings.static}
    previous_static = set()
    if previous is not None and previous.security is not None and previous.security.bindings is not None:
        previous_static = {(b.address, b.mac) for b in previous.security.bindings.static}
    learned: dict[IPAddress, Binding] = {}
    for binding in [*read_kernel_bindings(kernel), *read_neighbours(lan)]:
        if binding.address in static or (binding.address, binding.mac) in previous_static:
            continue
        learned.setdefault(binding.address, binding)
    return list(learned.values())


def runtime_elements(guard: CompiledGuard, previous: CompiledGuard | None, kernel: NftKernel,
                     lan: tuple[str, ...]) -> tuple[str, ...]:
    if not guard.has_table(NETDEV):
        return ()
    security = guard.security
    assert security is not None
    commands = []
    table_sets = {s.name for t in guard.tables if t.family == NETDEV for s in t.sets}
    if GATEWAY_ADDRESSES[4] in table_sets:
        addresses = read_gateway_addresses(lan)
        for version in (4, 6):
            own = [str(a) for a in addresses if a.version == version]
            commands.append(_add(GATEWAY_ADDRESSES[version], own))
    learned = learned_bindings(guard, previous, kernel, lan)
    if learned:
        log.info("event=bindings_learned count=%d", len(learned))
        for version in (4, 6):
            mine = [b for b in learned if b.address.version == version]
            commands.append(_add(BOUND[version], [str(b.address) for b in mine]))
            commands.append(_add(BINDINGS[version], [f"{b.address} . {b.mac}" for b in mine]))
    if security.scan is not None:
        for host in read_blocklist(kernel):
            if host.expires_seconds > 0:
                version = ipaddress.ip_address(host.address).version
                commands.append(_add(BLOCKLIST[version], [f"{host.address} timeout {host.expires_seconds}s"]))
                if host.reason == REASON_HOST_SWEEP:
                    commands.append(_add(SWEEPERS[version], [f"{host.address} timeout {host.expires_seconds}s"]))
    return tuple(c for c in commands if c)


def _add(set_name: str, elements: list[str]) -> str:
    if not elements:
        return ""
    return f"add element {NETDEV} {GUARD_TABLE_NAME} {set_name} {{ {', '.join(elements)} }}"
