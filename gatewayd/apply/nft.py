"""Talk to nftables through libnftables (in-process, one transaction per call).

In-process rather than `nft -f` in a subprocess: a DNS answer must be learned
into the kernel before its packet is released, so adding an element has to
cost microseconds, not a fork. The table is created without the `owner` flag
on purpose: an owned table dies with its process, and gatewayd must fail open
(its rules stay when the daemon dies).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import nftables

from gatewayd.compile.kernel_names import (
    HOST_BYTES,
    MAP_LEARNED_V4,
    MAP_LEARNED_V6,
    SET_FLOWS,
    SET_RECENT_BLOCKED_V4,
    SET_RECENT_BLOCKED_V6,
    SET_USAGE,
    TABLE_FAMILY,
    TABLE_NAME,
)
from gatewayd.compile.nftables_model import BaseHook, KernelObjects, NftTable


class NftError(RuntimeError):
    pass


@dataclass(frozen=True)
class LearnedElement:
    address: str
    chain: str  # "set_app_N"
    timeout_seconds: int


@dataclass(frozen=True)
class Counter:
    packets: int
    bytes: int


@dataclass(frozen=True)
class BlockedFlow:
    """One element of a recent_blocked set: client . server . proto . port . ct mark."""

    client: str
    server: str
    protocol: str | int  # nft names known protocols ("tcp"), numbers others
    port: int
    mark: int
    expires_seconds: int  # time it has left in the set
    age_seconds: int  # time since its flow was last blocked


@dataclass(frozen=True)
class HostBytes:
    """One element of a host_bytes set: what one office host moved in one direction."""

    address: str
    group_bits: int  # the GROUP_MASK bits of its flows' ct mark
    direction: str  # nft's ct direction: "original" (the host sent) or "reply" (it received)
    counter: Counter


def host_bytes(listing: list[dict[str, Any]]) -> list[HostBytes]:
    """The elements of `nft -j list set` of a host_bytes set."""
    found = []
    for item in listing:
        for element in item.get("set", {}).get("elem", []):
            value = element.get("elem", {}) if isinstance(element, dict) else {}
            parts = value.get("val", {}).get("concat") if isinstance(value.get("val"), dict) else None
            counter = value.get("counter")
            if parts and len(parts) == 3 and counter is not None:
                address, group_bits, direction = parts
                found.append(HostBytes(str(address), int(group_bits), str(direction),
                                       Counter(counter.get("packets", 0), counter.get("bytes", 0))))
    return found


def blocked_flows(listing: list[dict[str, Any]]) -> list[BlockedFlow]:
    """The elements of `nft -j list set` of a recent_blocked set that still have time left."""
    flows = []
    for item in listing:
        listed_set = item.get("set", {})
        # Elements the rules add with `update` inherit the set's timeout, and the kernel reports it on
        # the set only. An element carried over a reload has its own timeout (the time it had left), so
        # set timeout - expires is its age too.
        set_timeout = int(listed_set.get("timeout", 0))
        for element in listed_set.get("elem", []):
            value = element.get("elem", {}) if isinstance(element, dict) else {}
            parts = value.get("val", {}).get("concat") if isinstance(value.get("val"), dict) else None
            expires = int(value.get("expires", 0))
            if parts and len(parts) == 5 and expires > 0:
                client, server, protocol, port, mark = parts
                flows.append(BlockedFlow(str(client), str(server), protocol, int(port), int(mark), expires,
                                         max(0, set_timeout - expires)))
    return flows


def base_hook_of(listed_chain: dict[str, Any]) -> BaseHook | None:
    """The hook of a chain as `nft -j list chains` shows it; None for a regular chain."""
    if "hook" not in listed_chain:
        return None
    devices = listed_chain.get("dev", ())
    return BaseHook(str(listed_chain["hook"]), int(listed_chain.get("prio", 0)),
                    str(listed_chain.get("policy", "accept")),
                    (devices,) if isinstance(devices, str) else tuple(devices))


# The hooks whose base chains are bound to devices (netdev ingress/egress, inet ingress).
DEVICE_HOOKS = frozenset({"ingress", "egress"})
_LISTED_DEVICES = re.compile(r'\bdevices = \{([^}]*)\}|\bdevice "?([^";\s]+)"?')


def devices_in_listing(listing: str) -> tuple[str, ...]:
    """The devices of a base chain in nft's text listing: `device "lan0"` or `devices = { "a", "b" }`."""
    found = _LISTED_DEVICES.search(listing)
    if found is None:
        return ()
    if found.group(2) is not None:
        return (found.group(2),)
    return tuple(part.strip().strip('"') for part in found.group(1).split(",") if part.strip())


class NftContext(Protocol):
    """What NftKernel uses of a libnftables context (nftables.Nftables)."""

    def set_handle_output(self, value: bool) -> object: ...

    def set_json_output(self, value: bool) -> object: ...

    def set_terse_output(self, value: bool) -> object: ...

    def cmd(self, command: str) -> tuple[int, str, str]: ...


class NftKernel:
    def __init__(self, new_context: Callable[[], NftContext] = nftables.Nftables) -> None:
        """`new_context`: makes a libnftables context (a stand-in in tests)."""
        self._new_context = new_context

    def _cmd(self, command: str, json_output: bool, terse: bool = False) -> str:
        # A context of its own for every command (0.25 ms to make): libnftables keeps the
        # cache a listing filled (the whole table: ~4 MiB of C heap with policies/office.yaml)
        # until its context is freed, and every metrics collector has its own NftKernel, so
        # a long-lived context per kernel kept several copies of the ruleset in the daemon.
        nft = self._new_context()
        nft.set_handle_output(False)
        nft.set_json_output(json_output)
        if terse:
            nft.set_terse_output(True)  # a listing without elements: the learned map can be large
        rc, output, error = nft.cmd(command)
        if rc != 0:
            raise NftError(error.strip() or f"nft failed with code {rc}")
        return output

    def run(self, script: str) -> None:
        self._cmd(script, json_output=False)

    def query(self, command: str, terse: bool = False) -> list[dict[str, Any]]:
        output = self._cmd(command, json_output=True, terse=terse)
        return json.loads(output).get("nftables", []) if output else []

    # --- the table ---
    def table_exists(self) -> bool:
        try:
            self.query(f"list table {TABLE_FAMILY} {TABLE_NAME}")
            return True
        except NftError:
            return False

    def replace_table(self, table: NftTable, carried_state: Iterable[str] = (), companion_script: str = "") -> None:
        """Swap `table` in, keeping its base chains and so the packets waiting in NFQUEUE (see
        NftTable.swap_script). `companion_script` (the guard's tables) rides in the same all-or-nothing
        transaction."""
        present = self.present_objects(table.family, table.name)
        self.run(table.swap_script(present, tuple(carried_state)) + companion_script)

    def present_objects(self, family: str, table: str) -> KernelObjects:
        """The sets, maps, counters and chains of a table, without their elements or rules (terse)."""
        sets: dict[str, str] = {}
        chains: dict[str, BaseHook | None] = {}
        listings = [self.query(f"list {kind} {family}", terse=True) for kind in ("sets", "maps", "chains")]
        for item in (entry for listing in listings for entry in listing):
            kind, body = next(iter(item.items()))
            if not isinstance(body, dict) or body.get("table") != table:
                continue
            if kind in ("set", "map"):
                sets[body["name"]] = kind
            elif kind == "chain":
                chains[body["name"]] = base_hook_of(body)
        if not sets and not chains:  # no such table (a first start): nothing to delete
            return KernelObjects()
        counters = tuple(item["counter"]["name"] for item in self.query(f"list counters table {family} {table}")
                         if "counter" in item)
        for name, hook in chains.items():
            if hook is not None and hook.hook in DEVICE_HOOKS and not hook.devices:
                chains[name] = replace(hook, devices=self.chain_devices(family, table, name))
        return KernelObjects(sets, counters, chains)

    def chain_devices(self, family: str, table: str, chain: str) -> tuple[str, ...]:
        """A device-bound base chain's devices, from nft's text listing.

        nft 1.0.6 leaves them out of its JSON listing (no `dev`; seen with kernel 6.18), and
        without them every swap took the LAN guard's ingress chain for a changed one, deleted
        it and made it again: unregistering its hook dropped every packet waiting in NFQUEUE
        (nf_queue_nf_hook_drop), a few lookups lost on every few reloads.
        """
        return devices_in_listing(self._cmd(f"list chain {family} {table} {chain}", json_output=False))

    def delete_table(self) -> None:
        # Declaring first makes the delete idempotent (no error if it is gone).
        self.run(f"table {TABLE_FAMILY} {TABLE_NAME}\ndelete table {TABLE_FAMILY} {TABLE_NAME}\n")

    # --- state that must survive a reload ---
    def carried_state(self, valid_chains: set[str]) -> list[str]:
        """`add element` commands that recreate learned addresses and usage counters.

        Read just before the swap, with the learned-address writer paused
        (Applier._swap_table), so nothing is learned between the read and the new table.
        """
        if not self.table_exists():
            return []
        commands = []
        for map_name in (MAP_LEARNED_V4, MAP_LEARNED_V6):
            elements = [e for e in self.learned_elements(map_name) if e.chain in valid_chains]
            if elements:
                body = ", ".join(f"{e.address} timeout {e.timeout_seconds}s : goto {e.chain}" for e in elements)
                commands.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {map_name} {{ {body} }}")
        for set_name in (SET_USAGE, SET_FLOWS):
            counters = self.set_counters(set_name)
            if counters:
                body = ", ".join(f"0x{key:08x} counter packets {c.packets} bytes {c.bytes}"
                                 for key, c in counters.items())
                commands.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {set_name} {{ {body} }}")
        for set_name in HOST_BYTES.values():
            # Carried with the set's full timeout: an element's own timeout would stick to it, so every
            # later update would restart the shorter time it had left.
            body = ", ".join(f"{h.address} . 0x{h.group_bits:08x} . {h.direction} "
                             f"counter packets {h.counter.packets} bytes {h.counter.bytes}"
                             for h in self.host_bytes(set_name))
            if body:
                commands.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {set_name} {{ {body} }}")
        for set_name in (SET_RECENT_BLOCKED_V4, SET_RECENT_BLOCKED_V6):
            body = ", ".join(self.recent_blocked_elements(set_name))
            if body:
                commands.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {set_name} {{ {body} }}")
        return commands

    def recent_blocked_elements(self, set_name: str) -> list[str]:
        """Recently blocked flows as set elements with the time they have left (to carry over a reload)."""
        return [f"{flow.client} . {flow.server} . {flow.protocol} . {flow.port} . 0x{flow.mark:08x} "
                f"timeout {flow.expires_seconds}s" for flow in self.recent_blocked_flows(set_name)]

    def recent_blocked_flows(self, set_name: str) -> list[BlockedFlow]:
        return blocked_flows(self.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {set_name}"))

    def learned_elements(self, map_name: str) -> list[LearnedElement]:
        found = []
        for item in self.query(f"list map {TABLE_FAMILY} {TABLE_NAME} {map_name}"):
            for key, verdict in item.get("map", {}).get("elem", []):
                element = key.get("elem", {})
                chain = (verdict.get("goto") or verdict.get("jump") or {}).get("target")
                if chain and element.get("expires"):
                    found.append(LearnedElement(str(element["val"]), chain, int(element["expires"])))
        return found

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None:
        """Add learned addresses, every map in one transaction, each replacing what its map holds.

        The fallback of apply/learned_netlink.py for kernels without NFT_MSG_DESTROYSETELEM (before
        Linux 6.3). A plain add keeps an element that goes to the same chain and refuses the whole
        transaction (EEXIST) for one that goes to another; a delete refuses it for an element that is
        not there. So all are added at once, and when that is refused each goes on its own: an add,
        or where that is refused, a delete + add in one transaction (a lookup never misses it).
        """
        def added(map_name: str, elements: Sequence[LearnedElement]) -> str:
            body = ", ".join(f"{e.address} timeout {e.timeout_seconds}s : goto {e.chain}" for e in elements)
            return f"add element {TABLE_FAMILY} {TABLE_NAME} {map_name} {{ {body} }}\n"

        script = "".join(added(map_name, elements) for map_name, elements in batches if elements)
        if not script:
            return
        try:
            self.run(script)
            return
        except NftError:
            pass  # one of them goes elsewhere now (or the map refuses it): element by element
        for map_name, elements in batches:
            for element in elements:
                try:
                    self.run(added(map_name, [element]))
                except NftError:
                    self.run(f"delete element {TABLE_FAMILY} {TABLE_NAME} {map_name} {{ {element.address} }}\n"
                             + added(map_name, [element]))

    # --- counters for metrics ---
    def named_counters(self) -> dict[str, Counter]:
        counters = {}
        for item in self.query(f"list counters table {TABLE_FAMILY} {TABLE_NAME}"):
            counter = item.get("counter")
            if counter:
                counters[counter["name"]] = Counter(counter.get("packets", 0), counter.get("bytes", 0))
        return counters

    def set_counters(self, set_name: str) -> dict[int, Counter]:
        result = {}
        for item in self.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {set_name}"):
            for element in item.get("set", {}).get("elem", []):
                inner = element.get("elem", {}) if isinstance(element, dict) else {}
                counter = inner.get("counter")
                if counter is not None:
                    result[int(inner["val"])] = Counter(counter.get("packets", 0), counter.get("bytes", 0))
        return result

    def host_bytes(self, set_name: str) -> list[HostBytes]:
        return host_bytes(self.query(f"list set {TABLE_FAMILY} {TABLE_NAME} {set_name}"))

    def learned_count(self) -> dict[str, int]:
        counts = {}
        for map_name in (MAP_LEARNED_V4, MAP_LEARNED_V6):
            items = self.query(f"list map {TABLE_FAMILY} {TABLE_NAME} {map_name}")
            counts[map_name] = sum(len(i.get("map", {}).get("elem", [])) for i in items)
        return counts
