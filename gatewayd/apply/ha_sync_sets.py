"""Write what the HA master sent into this node's own sets, one transaction per batch.

The entries come from the peer over the sync link (daemon/ha_state_sync.py): learned
addresses (already mapped to this node's own set_app_N chains), recently blocked flows
and guard blocklist hosts, each with the time it has left on the master.

The backup must end up with exactly the master's entries, whatever it holds: an
element already there keeps its old timeout on a plain nft `add`, and a learned
address already there with another app's chain makes the `add` refuse the whole
transaction (EEXIST), losing the batch's other entries too. So the whole batch is one
netlink transaction of destroy + add for every set it touches
(set_elements_netlink.py, Linux >= 6.3).

A kernel without the destroy falls back, logged once, to nft: the plain sets (no
data, so an `add` never clashes) by add, delete, add in one transaction (the first
add makes the delete safe, the second sets the master's time), and the learned maps
by NftKernel.write_learned, which replaces a clashing element on its own: two or more
transactions per batch.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Sequence

from gatewayd.apply.guard_state import BlockedHost
from gatewayd.apply.learned_netlink import goto_data
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftError, NftKernel
from gatewayd.apply.set_elements_netlink import (
    DestroyUnsupported,
    ElementBatchError,
    ElementSocket,
    ElementWrite,
    added_element,
    key_attribute,
)
from gatewayd.compile.guard import REASON_HOST_SWEEP
from gatewayd.compile.kernel_names import (
    BLOCKLIST,
    GUARD_TABLE_NAME,
    MAP_LEARNED_V4,
    MAP_LEARNED_V6,
    NETDEV,
    SET_RECENT_BLOCKED_V4,
    SET_RECENT_BLOCKED_V6,
    SWEEPERS,
    TABLE_FAMILY,
    TABLE_NAME,
)

log = logging.getLogger("gatewayd.ha")

LEARNED_MAPS = {4: MAP_LEARNED_V4, 6: MAP_LEARNED_V6}
RECENT_BLOCKED_SETS = {4: SET_RECENT_BLOCKED_V4, 6: SET_RECENT_BLOCKED_V6}
# The names nft prints for the protocols of a recently blocked flow (the set holds tcp and udp).
PROTOCOL_NUMBERS = {"tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP, "sctp": socket.IPPROTO_SCTP,
                    "dccp": 33, "udplite": 136}
REGISTER_BYTES = 4  # each field of a concatenated key starts on a 32-bit register


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def _field(value: bytes) -> bytes:
    """One field of a concatenated key, zero-padded to whole registers as nft lays it out."""
    return value + bytes(-len(value) % REGISTER_BYTES)


def protocol_number(protocol: str | int) -> int:
    return protocol if isinstance(protocol, int) else PROTOCOL_NUMBERS.get(protocol) or socket.getprotobyname(protocol)


def blocked_flow_key(flow: BlockedFlow) -> bytes:
    """The recent_blocked key (client . server . inet_proto . inet_service . mark) as the kernel holds it:
    addresses and port in network order, the mark in host order (nft's mark type), each field padded."""
    return key_attribute(_field(_packed(flow.client)) + _field(_packed(flow.server))
                         + _field(bytes([protocol_number(flow.protocol)])) + _field(struct.pack("!H", flow.port))
                         + _field(struct.pack("=I", flow.mark)))


def _write(family: str, table: str, set_name: str, keyed: Sequence[tuple[bytes, int, bytes]]) -> ElementWrite:
    # One element per key, the last one sent winning: a key twice in one add would be refused.
    last = {key: (timeout, data) for key, timeout, data in keyed}
    return ElementWrite(family, table, set_name, list(last),
                        [added_element(key, timeout, data) for key, (timeout, data) in last.items()])


def synced_state_writes(learned: Sequence[LearnedElement], blocked: Sequence[BlockedFlow],
                        guard: Sequence[BlockedHost]) -> list[ElementWrite]:
    """The batch's elements, per set, for one destroy + add transaction (plain data: tested without root)."""
    writes = []
    for version in (4, 6):
        writes.append(_write(TABLE_FAMILY, TABLE_NAME, LEARNED_MAPS[version], [
            (key_attribute(_packed(e.address)), e.timeout_seconds, goto_data(e.chain))
            for e in learned if _version(e.address) == version]))
        writes.append(_write(TABLE_FAMILY, TABLE_NAME, RECENT_BLOCKED_SETS[version], [
            (blocked_flow_key(f), f.expires_seconds, b"") for f in blocked if _version(f.client) == version]))
        hosts = [h for h in guard if _version(h.address) == version]
        writes.append(_write(NETDEV, GUARD_TABLE_NAME, BLOCKLIST[version], [
            (key_attribute(_packed(h.address)), h.expires_seconds, b"") for h in hosts]))
        writes.append(_write(NETDEV, GUARD_TABLE_NAME, SWEEPERS[version], [
            (key_attribute(_packed(h.address)), h.expires_seconds, b"") for h in hosts
            if h.reason == REASON_HOST_SWEEP]))
    return [write for write in writes if write.keys]


def _replace(table: str, set_name: str, keys: list[str], elements: list[str]) -> str:
    """add, delete, add: every element ends up with exactly the timeout in `elements` (plain sets only)."""
    if not elements:
        return ""
    added = f"add element {table} {set_name} {{ {', '.join(elements)} }}\n"
    return added + f"delete element {table} {set_name} {{ {', '.join(keys)} }}\n" + added


def plain_sets_script(blocked: Sequence[BlockedFlow], guard: Sequence[BlockedHost]) -> str:
    """The fallback's nft script for the sets without data: recently blocked flows and the blocklist."""
    own = f"{TABLE_FAMILY} {TABLE_NAME}"
    guard_table = f"{NETDEV} {GUARD_TABLE_NAME}"
    script = []
    for version in (4, 6):
        flows = [f for f in blocked if _version(f.client) == version]
        keys = [f"{f.client} . {f.server} . {f.protocol} . {f.port} . 0x{f.mark:08x}" for f in flows]
        script.append(_replace(own, RECENT_BLOCKED_SETS[version], keys,
                               [f"{key} timeout {f.expires_seconds}s" for key, f in zip(keys, flows, strict=True)]))
        hosts = [h for h in guard if _version(h.address) == version]
        script.append(_replace(guard_table, BLOCKLIST[version], [h.address for h in hosts],
                               [f"{h.address} timeout {h.expires_seconds}s" for h in hosts]))
        sweepers = [h for h in hosts if h.reason == REASON_HOST_SWEEP]
        script.append(_replace(guard_table, SWEEPERS[version], [h.address for h in sweepers],
                               [f"{h.address} timeout {h.expires_seconds}s" for h in sweepers]))
    return "".join(script)


class SyncedStateWriter:
    """The backup's writer of synced entries (the daemon loop's): destroy + add over netlink where the
    kernel has the destroy, else nft."""

    def __init__(self, kernel: NftKernel, element_socket: ElementSocket | None = None) -> None:
        self._kernel = kernel
        self._socket = element_socket if element_socket is not None else ElementSocket()
        self.destroy_supported = True

    def write(self, learned: Sequence[LearnedElement], blocked: Sequence[BlockedFlow],
              guard: Sequence[BlockedHost]) -> None:
        """Raises NftError when the kernel refused the batch (on netlink, nothing of it applied)."""
        if self.destroy_supported:
            try:
                self._socket.replace(synced_state_writes(learned, blocked, guard))
                return
            except DestroyUnsupported:
                self.destroy_supported = False
                self._socket.close()
                log.warning("event=ha_sync_destroy_unsupported fallback=nft detail=%r",
                            "no NFT_MSG_DESTROYSETELEM (Linux < 6.3): a batch takes two or more transactions")
            except (ElementBatchError, OSError) as exc:
                raise NftError(str(exc)) from exc
        script = plain_sets_script(blocked, guard)
        if script:
            self._kernel.run(script)
        if learned:
            self._kernel.write_learned([(LEARNED_MAPS[version], [e for e in learned if _version(e.address) == version])
                                        for version in (4, 6)])

    def close(self) -> None:
        self._socket.close()
