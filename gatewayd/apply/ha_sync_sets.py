"""Write what the HA master sent into this node's own sets, one nft transaction per batch.

The entries come from the peer over the sync link (daemon/ha_state_sync.py): learned
addresses (already mapped to this node's own set_app_N chains), recently blocked flows
and guard blocklist hosts, each with the time it has left on the master.

An element that is already there keeps its old timeout on a plain `add`, so each is
added, deleted and added again in the same transaction: the add makes the delete safe
(no "no such element"), the second add sets the master's time, and a lookup never
misses the element meanwhile (the transaction is atomic).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from gatewayd.apply.guard_state import BlockedHost
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftKernel
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

LEARNED_MAPS = {4: MAP_LEARNED_V4, 6: MAP_LEARNED_V6}
RECENT_BLOCKED_SETS = {4: SET_RECENT_BLOCKED_V4, 6: SET_RECENT_BLOCKED_V6}


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _replace(table: str, set_name: str, keys: list[str], elements: list[str]) -> str:
    """add, delete, add: every element ends up with exactly the timeout in `elements`."""
    if not elements:
        return ""
    added = f"add element {table} {set_name} {{ {', '.join(elements)} }}\n"
    return added + f"delete element {table} {set_name} {{ {', '.join(keys)} }}\n" + added


def synced_state_script(learned: Sequence[LearnedElement], blocked: Sequence[BlockedFlow],
                        guard: Sequence[BlockedHost]) -> str:
    """The nft script that writes one batch (plain text: tested without root)."""
    own = f"{TABLE_FAMILY} {TABLE_NAME}"
    guard_table = f"{NETDEV} {GUARD_TABLE_NAME}"
    script = []
    for version in (4, 6):
        mine = [e for e in learned if _version(e.address) == version]
        script.append(_replace(own, LEARNED_MAPS[version], [e.address for e in mine],
                               [f"{e.address} timeout {e.timeout_seconds}s : goto {e.chain}" for e in mine]))
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


def write_synced_state(kernel: NftKernel, learned: Sequence[LearnedElement], blocked: Sequence[BlockedFlow],
                       guard: Sequence[BlockedHost]) -> None:
    """One transaction for the whole batch; raises NftError (and changes nothing) when it fails."""
    script = synced_state_script(learned, blocked, guard)
    if script:
        kernel.run(script)
