"""Keep the HA backup's own sets current from the master: what conntrackd does not carry.

conntrackd replicates the flows and their ct marks (verdicts, classes). The sets in
gatewayd's tables stay behind on the master: the DNS-learned addresses, the recently
blocked flows and the guard's blocklist. Without them the backup would send a new
flow to a learned address back through the classifier (a queue trip, and undecided
if the DNS answer came before the failover), and a scanner would be free again.

The master reads those sets every SEND_INTERVAL_SECONDS and sends what is new, or
whose time was extended by more than REFRESH_SLACK_SECONDS, to the peer's sync
address (UDP SYNC_PORT); the backup writes each datagram's entries into its own
sets with the time they have left, in one nft transaction (apply/ha_sync_sets.py).
While the peer is not heard nothing is sent and the record of what it has is
forgotten: when it comes back it gets everything again.

Bounded: at most MAX_SENT_ENTRIES_PER_SECOND sent (the rest waits for the next round),
datagrams of at most MAX_DATAGRAM_BYTES, at most MAX_READS_PER_POLL read per loop round
and MAX_RECEIVED_ENTRIES_PER_SECOND written. A LAN host cannot inject entries: the
socket is bound to the sync interface (SO_BINDTODEVICE), only datagrams from the
peer's sync address naming the peer are read, and the sender sets TTL/hop limit 255
and the receiver requires 255 (RFC 5082, GTSM): a routed packet arrives with less.
A node that is master itself refuses what it receives.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gatewayd.apply.guard_state import BlockedHost, read_blocklist
from gatewayd.apply.ha_state import KNOWN_STATES, UNKNOWN
from gatewayd.apply.ha_sync_sets import LEARNED_MAPS, RECENT_BLOCKED_SETS, write_synced_state
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftError, NftKernel
from gatewayd.compile.kernel_names import set_app_chain
from gatewayd.daemon.ha_sync_wire import (
    MAX_DATAGRAM_BYTES,
    BlockedEntry,
    GuardEntry,
    LearnedEntry,
    SyncEntry,
    decode,
    encode,
    kind_of,
)
from gatewayd.metrics.ha_sync import HaSyncMetrics
from gatewayd.policy.model import HaNode

log = logging.getLogger("gatewayd.ha")

MASTER = "master"
assert MASTER in KNOWN_STATES
SYNC_PORT = 3782  # beside conntrackd's 3780 and the peer heartbeat's 3781 on the sync link
SEND_INTERVAL_SECONDS = 0.5  # with the loop's wake-up, an entry reaches the backup within about 1 s
REFRESH_SLACK_SECONDS = 10  # a refresh that extends an entry by less is not worth a datagram
MAX_SENT_ENTRIES_PER_SECOND = 5000  # ~250 kB/s at most on the sync link
MAX_RECEIVED_ENTRIES_PER_SECOND = 10000
MAX_READS_PER_POLL = 64
GTSM_TTL = 255
IP_RECVTTL = 12  # linux/in.h; Python's socket module does not export it
ANCILLARY_BYTES = socket.CMSG_SPACE(struct.calcsize("i"))


@dataclass
class SyncPeers:
    node: HaNode
    peer: HaNode
    interface: str


class HaStateSync:
    def __init__(self, kernel: NftKernel, metrics: HaSyncMetrics) -> None:
        self.kernel = kernel
        self.metrics = metrics
        self.peers: SyncPeers | None = None
        self.apps: Mapping[str, int] = {}
        self.guard_blocklist = False
        self._socket: socket.socket | None = None
        self._told: dict[tuple[str, str], float] = {}  # entry key -> when (monotonic) the peer forgets it
        self._next_send = 0.0
        self._received_window = (0.0, 0)  # (second it started, entries taken in it)
        self._write_failed_logged = False

    def adopt(self, node: HaNode | None, peer: HaNode | None, interface: str | None, apps: Mapping[str, int],
              guard_blocklist: bool) -> None:
        """The pair in force (None: not a pair, or this box is neither node), the app numbering and
        whether the policy has a guard blocklist."""
        self.apps = dict(apps)
        self.guard_blocklist = guard_blocklist
        wanted = SyncPeers(node, peer, interface) if node and peer and interface else None
        if wanted == self.peers and self._socket is not None:
            return
        self.close()
        self.peers = wanted
        self._told.clear()
        if wanted is not None:
            self._socket = self._open(wanted)

    def _open(self, peers: SyncPeers) -> socket.socket | None:
        v6 = peers.node.sync_address.version == 6
        sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, peers.interface.encode())
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, GTSM_TTL)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, GTSM_TTL)
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            sock.bind((str(peers.node.sync_address), SYNC_PORT))
        except OSError as error:
            sock.close()
            log.warning("event=ha_sync_unbound address=%s interface=%s error=%r", peers.node.sync_address,
                        peers.interface, str(error))
            return None
        sock.setblocking(False)
        return sock

    def fds(self) -> list[int]:
        return [self._socket.fileno()] if self._socket is not None else []

    def seconds_to_next_send(self, now: float, own_state: str) -> float | None:
        if self._socket is None or own_state != MASTER:
            return None
        return max(0.0, self._next_send - now)

    def poll(self, own_state: str, peer_state: str, now: float | None = None) -> None:
        if self._socket is None or self.peers is None:
            return
        now = time.monotonic() if now is None else now
        self._receive(own_state, now)
        if peer_state == UNKNOWN:
            self._told.clear()  # the peer is gone or restarting: when it is heard again, it gets everything
            return
        if own_state == MASTER and now >= self._next_send:
            self._next_send = now + SEND_INTERVAL_SECONDS
            self._send(now)

    # --- master ---
    def _send(self, now: float) -> None:
        assert self._socket is not None and self.peers is not None
        try:
            current = self.read_entries()
        except NftError as exc:
            log.warning("event=ha_sync_read_failed error=%r", str(exc))
            return
        budget = int(MAX_SENT_ENTRIES_PER_SECOND * SEND_INTERVAL_SECONDS)
        due = [e for e in current if e.key not in self._told
               or now + e.seconds_left > self._told[e.key] + REFRESH_SLACK_SECONDS][:budget]
        # Forget what left the kernel (bounded memory); keep what was told of what is still there.
        present = {e.key for e in current}
        self._told = {key: until for key, until in self._told.items() if key in present}
        address = (str(self.peers.peer.sync_address), SYNC_PORT)
        for datagram in encode(self.peers.node.name, due):
            try:
                self._socket.sendto(datagram, address)
            except OSError:
                return  # the sync link is down: what was not sent is sent next round
            self.metrics.bytes.labels("sent").inc(len(datagram))
        for entry in due:
            self._told[entry.key] = now + entry.seconds_left
            self.metrics.entries.labels("sent", kind_of(entry)).inc()

    def read_entries(self) -> list[SyncEntry]:
        """This node's learned addresses, recently blocked flows and guard blocklist, with their time left."""
        app_of_chain = {set_app_chain(number): app for app, number in self.apps.items()}
        entries: list[SyncEntry] = []
        for map_name in LEARNED_MAPS.values():
            entries += [LearnedEntry(e.address, app_of_chain[e.chain], e.timeout_seconds)
                        for e in self.kernel.learned_elements(map_name) if e.chain in app_of_chain]
        for set_name in RECENT_BLOCKED_SETS.values():
            entries += [BlockedEntry(f.client, f.server, f.protocol, f.port, f.mark, f.expires_seconds)
                        for f in self.kernel.recent_blocked_flows(set_name)]
        if self.guard_blocklist:
            entries += [GuardEntry(h.address, h.expires_seconds, h.reason)
                        for h in read_blocklist(self.kernel) if h.expires_seconds > 0]
        return entries

    # --- backup ---
    def _receive(self, own_state: str, now: float) -> None:
        assert self._socket is not None and self.peers is not None
        for _ in range(MAX_READS_PER_POLL):
            try:
                data, ancillary, _flags, sender = self._socket.recvmsg(MAX_DATAGRAM_BYTES + 1, ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not self._from_peer(sender[0], ancillary):
                continue
            decoded = decode(data)
            if decoded is None or decoded.node != self.peers.peer.name:
                continue
            self.metrics.bytes.labels("received").inc(len(data))
            for kind, count in decoded.refused.items():
                self.metrics.entries.labels("refused", kind).inc(count)
            taken = list(decoded.entries) if own_state != MASTER else []  # two masters: each keeps its own
            taken = taken[:self._receive_budget(now, len(taken))]
            self._refuse(decoded.entries[len(taken):])
            self._write(taken)

    def _from_peer(self, sender: str, ancillary: list[tuple[int, int, bytes]]) -> bool:
        assert self.peers is not None
        try:
            if ipaddress.ip_address(sender.split("%")[0]) != self.peers.peer.sync_address:
                return False
        except ValueError:
            return False
        for level, kind, value in ancillary:
            if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL), (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)):
                return len(value) >= 4 and struct.unpack("i", value[:4])[0] == GTSM_TTL
        return False  # no TTL reported: cannot tell it came from the link itself

    def _receive_budget(self, now: float, wanted: int) -> int:
        started, taken = self._received_window
        if now - started >= 1.0:
            started, taken = now, 0
        allowed = min(wanted, MAX_RECEIVED_ENTRIES_PER_SECOND - taken)
        self._received_window = (started, taken + allowed)
        return allowed

    def _refuse(self, entries: tuple[SyncEntry, ...] | list[SyncEntry]) -> None:
        for entry in entries:
            self.metrics.entries.labels("refused", kind_of(entry)).inc()

    def _write(self, entries: list[SyncEntry]) -> None:
        learned: list[LearnedElement] = []
        blocked: list[BlockedFlow] = []
        guard: list[BlockedHost] = []
        refused: list[SyncEntry] = []
        for entry in entries:
            if isinstance(entry, LearnedEntry) and entry.app in self.apps:
                learned.append(LearnedElement(entry.address, set_app_chain(self.apps[entry.app]),
                                              entry.seconds_left))
            elif isinstance(entry, BlockedEntry):
                blocked.append(BlockedFlow(entry.client, entry.server, entry.protocol, entry.port, entry.mark,
                                           entry.seconds_left, 0))
            elif isinstance(entry, GuardEntry) and self.guard_blocklist:
                guard.append(BlockedHost(entry.address, entry.seconds_left, entry.reason))
            else:
                refused.append(entry)  # an app this policy does not know, or no blocklist here
        self._refuse(refused)
        written = [e for e in entries if e not in refused]
        if not written:
            return
        try:
            write_synced_state(self.kernel, learned, blocked, guard)
        except NftError as exc:
            self._refuse(written)
            if not self._write_failed_logged:  # one line, not one per datagram
                log.warning("event=ha_sync_write_failed entries=%d error=%r", len(written), str(exc))
                self._write_failed_logged = True
            return
        self._write_failed_logged = False
        for entry in written:
            self.metrics.entries.labels("received", kind_of(entry)).inc()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

