"""Keep the HA backup's own sets current from the master: what conntrackd does not carry.

conntrackd replicates the flows and their ct marks (verdicts, classes). The sets in
gatewayd's tables stay behind on the master: the DNS-learned addresses, the recently
blocked flows and the guard's blocklist. Without them the backup would send a new
flow to a learned address back through the classifier (a queue trip, and undecided
if the DNS answer came before the failover), and a scanner would be free again.

What the master sends, every SEND_INTERVAL_SECONDS, to the peer's sync address (UDP
SYNC_PORT), each entry with the time it has left:
  * learned addresses as the classifier writes them (VerdictHandler.on_learned): the
    learned maps hold up to 2 x 262,144 entries, too many to re-read twice a second;
  * the recently blocked flows and the blocklist, which the kernel writes itself: read
    every KERNEL_SETS_SECONDS (a few thousand entries at most); sent when new or
    extended by more than REFRESH_SLACK_SECONDS;
  * everything, once, when the peer is heard again after silence (it may have
    restarted empty): the learned maps are then read by a thread with its own nft
    handle, so the classifier's loop never waits for a large listing.
The backup writes each datagram's entries into its own sets in one transaction that
replaces whatever they held (apply/ha_sync_sets.py), learned addresses under its own
app numbers.

Bounded: at most MAX_SENT_ENTRIES_PER_SECOND sent (the rest waits for the next round;
at most MAX_PENDING_ENTRIES wait), datagrams of at most MAX_DATAGRAM_BYTES, at most
MAX_READS_PER_POLL read per loop round and MAX_RECEIVED_ENTRIES_PER_SECOND written.
A LAN host cannot inject entries: the socket is bound to the sync interface
(SO_BINDTODEVICE), only datagrams from the peer's sync address naming the peer are
read, and the sender sets TTL/hop limit 255 and the receiver requires 255 (RFC 5082,
GTSM): a routed packet arrives with less. A node that is master refuses what it
receives.
"""

from __future__ import annotations

import collections
import ipaddress
import itertools
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gatewayd.apply.guard_state import BlockedHost, read_blocklist
from gatewayd.apply.ha_state import KNOWN_STATES, UNKNOWN
from gatewayd.apply.ha_sync_sets import LEARNED_MAPS, RECENT_BLOCKED_SETS, SyncedStateWriter
from gatewayd.apply.nft import BlockedFlow, LearnedElement, NftError, NftKernel
from gatewayd.compile.kernel_names import set_app_chain
from gatewayd.compile.ruleset import LEARNED_MAP_SIZE
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
SEND_INTERVAL_SECONDS = 0.5  # a learned address reaches the backup within about 0.5 s
KERNEL_SETS_SECONDS = 1.0  # blocked flows and blocklist: within about 1 s
REFRESH_SLACK_SECONDS = 10  # a refresh that extends an entry by less is not worth a datagram
MAX_SENT_ENTRIES_PER_SECOND = 5000  # ~250 kB/s at most on the sync link
MAX_RECEIVED_ENTRIES_PER_SECOND = 10000
MAX_PENDING_ENTRIES = 2 * LEARNED_MAP_SIZE  # the whole of both learned maps (a full sync); more is refused
MAX_READS_PER_POLL = 64
GTSM_TTL = 255
IP_RECVTTL = 12  # linux/in.h; Python's socket module does not export it
ANCILLARY_BYTES = socket.CMSG_SPACE(struct.calcsize("i"))


@dataclass
class SyncPeers:
    node: HaNode
    peer: HaNode
    interface: str


def read_learned_with_own_handle() -> list[LearnedElement]:
    """Both learned maps, through an nft handle of its own (the full-sync thread's)."""
    kernel = NftKernel()
    return [element for map_name in LEARNED_MAPS.values() for element in kernel.learned_elements(map_name)]


# Writes one datagram's entries into this node's sets (SyncedStateWriter.write); NftError when refused.
WriteState = Callable[[Sequence[LearnedElement], Sequence[BlockedFlow], Sequence[BlockedHost]], None]


class HaStateSync:
    def __init__(self, kernel: NftKernel, metrics: HaSyncMetrics,
                 read_all_learned: Callable[[], list[LearnedElement]] = read_learned_with_own_handle,
                 write_state: WriteState | None = None) -> None:
        self.kernel = kernel
        self._writer: SyncedStateWriter | None = None  # its netlink socket is closed with the sync's
        if write_state is None:
            self._writer = SyncedStateWriter(kernel)
            write_state = self._writer.write
        self.write_state = write_state
        self.metrics = metrics
        self.read_all_learned = read_all_learned
        self.peers: SyncPeers | None = None
        self.apps: Mapping[str, int] = {}
        self._app_of_chain: dict[str, str] = {}
        self.guard_blocklist = False
        self._socket: socket.socket | None = None
        self._pending: dict[tuple[str, str], SyncEntry] = {}  # to send, the latest of each entry
        self._told: dict[tuple[str, str], float] = {}  # kernel-set entry -> when (monotonic) the peer forgets it
        self._peer_has_all = False  # the full sync since the peer was last heard is queued
        self._full_read: threading.Thread | None = None
        self._full_result: list[LearnedElement] | None = None  # handed over by the thread
        # Written by the learned-address writer's thread (note_learned), drained by the loop (poll):
        # deque's append and popleft are atomic, so neither side takes a lock. Bounded like _pending.
        self._learned_inbox: collections.deque[LearnedElement] = collections.deque(maxlen=MAX_PENDING_ENTRIES)
        self._next_send = 0.0
        self._next_kernel_read = 0.0
        self._received_window = (0.0, 0)  # (second it started, entries taken in it)
        self._write_failed_logged = False

    def adopt(self, node: HaNode | None, peer: HaNode | None, interface: str | None, apps: Mapping[str, int],
              guard_blocklist: bool) -> None:
        """The pair in force (None: not a pair, or this box is neither node), the app numbering and
        whether the policy has a guard blocklist."""
        self.apps = dict(apps)
        self._app_of_chain = {set_app_chain(number): app for app, number in self.apps.items()}
        self.guard_blocklist = guard_blocklist
        wanted = SyncPeers(node, peer, interface) if node and peer and interface else None
        if wanted == self.peers and self._socket is not None:
            return
        self.close()
        self.peers = wanted
        self._forget_peer()
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

    def seconds_to_next_round(self, now: float) -> float | None:
        """When poll has work besides reading (a send round), for the loop's select timeout."""
        if self._socket is None:
            return None
        return max(0.0, self._next_send - now)

    def wants_poll(self, readable: list[int], now: float) -> bool:
        """Datagrams wait or a round is due: the loop need not read the VRRP state file otherwise."""
        return self._socket is not None and (self._socket.fileno() in readable or now >= self._next_send)

    def note_learned(self, elements: list[LearnedElement]) -> None:
        """The learned-address writer put these into the learned maps (LearnedWriter.on_written; its thread)."""
        if self._socket is not None:
            overflow = len(self._learned_inbox) + len(elements) - (self._learned_inbox.maxlen or 0)
            if overflow > 0:  # the loop has not drained it for a long while: the oldest go, counted
                self.metrics.entries.labels("refused", "learned").inc(overflow)
            self._learned_inbox.extend(elements)

    def _take_learned_inbox(self) -> None:
        """What the writer's thread handed over since the last round, queued for the peer."""
        taken = [self._learned_inbox.popleft() for _ in range(len(self._learned_inbox))]
        self._queue(LearnedEntry(e.address, self._app_of_chain[e.chain], e.timeout_seconds)
                    for e in taken if e.chain in self._app_of_chain)

    def poll(self, own_state: str, peer_state: str, now: float | None = None) -> None:
        if self._socket is None or self.peers is None:
            return
        now = time.monotonic() if now is None else now
        self._receive(own_state, now)
        self._take_learned_inbox()
        if now < self._next_send:
            return
        self._next_send = now + SEND_INTERVAL_SECONDS
        if peer_state == UNKNOWN or own_state != MASTER:
            self._forget_peer()  # when it is heard again (it may have restarted empty), it gets everything
            return
        if not self._peer_has_all:
            self._full_sync()
        if now >= self._next_kernel_read:
            self._next_kernel_read = now + KERNEL_SETS_SECONDS
            self._queue_kernel_sets(now)
        self._send()

    # --- master ---
    def _forget_peer(self) -> None:
        self._pending.clear()
        self._told.clear()
        self._peer_has_all = False
        self._full_result = None

    def _queue(self, entries: Iterable[SyncEntry]) -> None:
        for entry in entries:
            if len(self._pending) < MAX_PENDING_ENTRIES or entry.key in self._pending:
                self._pending[entry.key] = entry
            else:
                self.metrics.entries.labels("refused", kind_of(entry)).inc()

    def _full_sync(self) -> None:
        """Everything once: the learned maps from the thread (started here), the kernel sets right now."""
        if self._full_read is None:
            self._full_read = threading.Thread(target=self._read_learned_in_thread, name="ha-full-sync",
                                               daemon=True)
            self._full_read.start()
            self._next_kernel_read = 0.0
            return
        if self._full_read.is_alive():
            return
        self._full_read = None
        result, self._full_result = self._full_result, None
        if result is None:
            return  # the read failed (logged): the next round starts another
        self._queue(LearnedEntry(e.address, self._app_of_chain[e.chain], e.timeout_seconds)
                    for e in result if e.chain in self._app_of_chain)
        self._peer_has_all = True

    def _read_learned_in_thread(self) -> None:
        try:
            self._full_result = self.read_all_learned()
        except Exception as exc:  # a failed read is retried by the next round; the daemon must not die of it
            log.warning("event=ha_sync_full_read_failed error=%r", str(exc))

    def _queue_kernel_sets(self, now: float) -> None:
        try:
            current = self.read_kernel_sets()
        except NftError as exc:
            log.warning("event=ha_sync_read_failed error=%r", str(exc))
            return
        changed = [e for e in current if e.key not in self._told
                   or now + e.seconds_left > self._told[e.key] + REFRESH_SLACK_SECONDS]
        # Forget what left the kernel (bounded memory); what is still there keeps its record.
        present = {e.key for e in current}
        self._told = {key: until for key, until in self._told.items() if key in present}
        for entry in changed:
            self._told[entry.key] = now + entry.seconds_left
        self._queue(changed)

    def read_kernel_sets(self) -> list[SyncEntry]:
        """The sets the kernel writes itself: recently blocked flows and the guard's blocklist."""
        entries: list[SyncEntry] = []
        for set_name in RECENT_BLOCKED_SETS.values():
            entries += [BlockedEntry(f.client, f.server, f.protocol, f.port, f.mark, f.expires_seconds)
                        for f in self.kernel.recent_blocked_flows(set_name)]
        if self.guard_blocklist:
            entries += [GuardEntry(h.address, h.expires_seconds, h.reason)
                        for h in read_blocklist(self.kernel) if h.expires_seconds > 0]
        return entries

    def _send(self) -> None:
        assert self._socket is not None and self.peers is not None
        budget = int(MAX_SENT_ENTRIES_PER_SECOND * SEND_INTERVAL_SECONDS)
        due = list(itertools.islice(self._pending.values(), budget))
        address = (str(self.peers.peer.sync_address), SYNC_PORT)
        for datagram in encode(self.peers.node.name, due):
            try:
                self._socket.sendto(datagram, address)
            except OSError:
                return  # the sync link is down: what was not sent is sent next round
            self.metrics.bytes.labels("sent").inc(len(datagram))
        for entry in due:
            del self._pending[entry.key]
            self.metrics.entries.labels("sent", kind_of(entry)).inc()

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
            self.write_state(learned, blocked, guard)
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
        if self._writer is not None:
            self._writer.close()

