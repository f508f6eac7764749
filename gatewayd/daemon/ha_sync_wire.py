"""The state the master sends its backup beside conntrackd, and its datagrams (plain data, no I/O).

conntrackd carries the flows and their ct marks; what lives in gatewayd's own sets
does not travel with them: the DNS-learned addresses, the recently blocked flows and
the LAN guard's blocklist. daemon/ha_state_sync.py sends them; this module says what
one entry is, packs entries into datagrams of at most MAX_DATAGRAM_BYTES and reads
them back, refusing anything malformed entry by entry.

A learned address travels with its app's *name*: the chain number is this node's own
numbering (compile/numbering.py), and the backup maps the name to its own chain.
Every entry carries the seconds it has left, so the backup forgets it when the
master would have.

    {"node": "gw-a", "learned": [["203.0.113.7", "wechat", 290]],
     "blocked": [["192.0.2.10", "203.0.113.9", "tcp", 443, 2162688, 580]],
     "guard": [["192.0.2.66", 240, "host_sweep"]]}
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gatewayd.compile.guard import REASON_HOST_SWEEP, REASON_PORT_SCAN
from gatewayd.policy.fields import NAME_PATTERN

# One datagram fits the IPv6 minimum MTU (1280) with IPv6 and UDP headers: never fragmented.
MAX_DATAGRAM_BYTES = 1232
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600  # longer than any timeout gatewayd's sets use: anything more is garbage
MAX_PORT = 65535
MAX_MARK = 0xFFFFFFFF
APP_NAME = re.compile(NAME_PATTERN)
PROTOCOL_NAMES = ("tcp", "udp")  # what the recent_blocked sets hold; nft prints others as numbers
GUARD_REASONS = (REASON_PORT_SCAN, REASON_HOST_SWEEP)

# Bounded label values of gatewayd_ha_sync_entries_total{kind}.
KIND_LEARNED, KIND_BLOCKED, KIND_GUARD = "learned", "blocked", "guard"
KINDS = (KIND_LEARNED, KIND_BLOCKED, KIND_GUARD)


@dataclass(frozen=True)
class LearnedEntry:
    address: str
    app: str
    seconds_left: int

    @property
    def key(self) -> tuple[str, str]:
        return KIND_LEARNED, self.address


@dataclass(frozen=True)
class BlockedEntry:
    client: str
    server: str
    protocol: str | int
    port: int
    mark: int
    seconds_left: int

    @property
    def key(self) -> tuple[str, str]:
        return KIND_BLOCKED, f"{self.client} {self.server} {self.protocol} {self.port} {self.mark}"


@dataclass(frozen=True)
class GuardEntry:
    address: str
    seconds_left: int
    reason: str = REASON_PORT_SCAN

    @property
    def key(self) -> tuple[str, str]:
        return KIND_GUARD, self.address


SyncEntry = LearnedEntry | BlockedEntry | GuardEntry


def kind_of(entry: SyncEntry) -> str:
    return entry.key[0]


def _row(entry: SyncEntry) -> list[Any]:
    if isinstance(entry, LearnedEntry):
        return [entry.address, entry.app, entry.seconds_left]
    if isinstance(entry, BlockedEntry):
        return [entry.client, entry.server, entry.protocol, entry.port, entry.mark, entry.seconds_left]
    return [entry.address, entry.seconds_left, entry.reason]


def _datagram(node: str, rows: dict[str, list[list[Any]]]) -> bytes:
    return json.dumps({"node": node, **{kind: found for kind, found in rows.items() if found}},
                      separators=(",", ":")).encode()


def encode(node: str, entries: Iterable[SyncEntry]) -> list[bytes]:
    """Datagrams of at most MAX_DATAGRAM_BYTES each, every entry in exactly one of them."""
    datagrams: list[bytes] = []
    rows: dict[str, list[list[Any]]] = {kind: [] for kind in KINDS}
    empty = len(_datagram(node, rows))
    size = empty
    for entry in entries:
        row = _row(entry)
        # +1 for the comma, +len('"kind":[]',) when the kind's list is new: an upper bound, never under
        cost = len(json.dumps(row, separators=(",", ":"))) + 1 + len(kind_of(entry)) + 6
        if size + cost > MAX_DATAGRAM_BYTES and size > empty:
            datagrams.append(_datagram(node, rows))
            rows = {kind: [] for kind in KINDS}
            size = empty
        rows[kind_of(entry)].append(row)
        size += cost
    if size > empty:
        datagrams.append(_datagram(node, rows))
    return datagrams


@dataclass(frozen=True)
class Decoded:
    node: str
    entries: tuple[SyncEntry, ...]
    refused: dict[str, int]  # kind -> malformed entries dropped


def decode(data: bytes) -> Decoded | None:
    """The datagram's entries; None when it is not a sync datagram at all (then nothing is taken)."""
    if len(data) > MAX_DATAGRAM_BYTES:
        return None
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or not isinstance(message.get("node"), str):
        return None
    entries: list[SyncEntry] = []
    refused = dict.fromkeys(KINDS, 0)
    for kind, parse in ((KIND_LEARNED, _learned), (KIND_BLOCKED, _blocked), (KIND_GUARD, _guard)):
        rows = message.get(kind, [])
        if not isinstance(rows, list):
            refused[kind] += 1
            continue
        for row in rows:
            entry = parse(row) if isinstance(row, list) else None
            if entry is None:
                refused[kind] += 1
            else:
                entries.append(entry)
    return Decoded(message["node"], tuple(entries), refused)


def _address(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if address.is_multicast or address.is_unspecified or address.is_loopback:
        return None
    return str(address)


def _bounded(value: Any, low: int, high: int) -> int | None:
    # bool is an int in Python; JSON true is no number here
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None


def _learned(row: Sequence[Any]) -> LearnedEntry | None:
    if len(row) != 3:
        return None
    address, app, seconds = _address(row[0]), row[1], _bounded(row[2], 1, MAX_TIMEOUT_SECONDS)
    if address is None or seconds is None or not isinstance(app, str) or not APP_NAME.match(app):
        return None
    return LearnedEntry(address, app, seconds)


def _blocked(row: Sequence[Any]) -> BlockedEntry | None:
    if len(row) != 6:
        return None
    client, server = _address(row[0]), _address(row[1])
    protocol = row[2] if row[2] in PROTOCOL_NAMES else _bounded(row[2], 0, 255)
    port, mark = _bounded(row[3], 0, MAX_PORT), _bounded(row[4], 0, MAX_MARK)
    seconds = _bounded(row[5], 1, MAX_TIMEOUT_SECONDS)
    if client is None or server is None or protocol is None or port is None or mark is None or seconds is None:
        return None
    if ipaddress.ip_address(client).version != ipaddress.ip_address(server).version:
        return None
    return BlockedEntry(client, server, protocol, port, mark, seconds)


def _guard(row: Sequence[Any]) -> GuardEntry | None:
    if len(row) != 3:
        return None
    address, seconds = _address(row[0]), _bounded(row[1], 1, MAX_TIMEOUT_SECONDS)
    if address is None or seconds is None or row[2] not in GUARD_REASONS:
        return None
    return GuardEntry(address, seconds, str(row[2]))
