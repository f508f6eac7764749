"""Write DNS-learned addresses into the kernel's learned maps off the verdict path.

The verdict loop only hands addresses over (`submit`, a dict insert under a
lock) and releases the DNS answer at once; a writer thread puts them into the
kernel in batches, one nf_tables transaction per batch. A netlink write can wait
milliseconds (on the netns' nftables commit mutex while a big policy
transaction goes in, or for the GIL while a policy compiles), and no queued
packet may wait that long for its verdict (issue 12: 5 ms).

An address the kernel does not hold yet is still decided right: the client's
first packet to it is queued like any undecided flow's, and the classifier
decides it from its own learned memory (classify/engine.py,
`_first_packet_decision`); once the write lands, the kernel decides such
flows itself.

Each element written replaces whatever the maps hold for its address (destroy +
add in one transaction: apply/learned_netlink.py), so the writer's book of what it
wrote (LearnedAddressBook) is only a bounded cache of answers that change nothing.

Bounded: at most `max_pending` addresses wait (a newer answer for a waiting
address replaces it: coalesced); an address that finds the queue full is
dropped and counted, and its flows are classified in Python until a later
answer writes it. The applier holds the writer (`paused`) while it swaps the
table, so a batch never lands between the read of the learned maps that the
swap carries over and the swap itself, and sets the numbering of the table
in force (`use_numbers`) before it lets the writer go again.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from gatewayd.apply.learned_netlink import KernelLearnedMaps
from gatewayd.apply.nft import LearnedElement, NftError, NftKernel
from gatewayd.classify.engine import LearnedAddress
from gatewayd.compile.kernel_names import MAP_LEARNED_V4, MAP_LEARNED_V6, set_app_chain
from gatewayd.compile.ruleset import LEARNED_MAP_SIZE

log = logging.getLogger("gatewayd.learned")

MAX_PENDING = 4096  # addresses waiting for the kernel; a DNS burst of a whole office is a few hundred
MAX_BATCH = 512  # addresses per nft transaction: one netlink batch, well under a millisecond of kernel work
STOP_SECONDS = 2.0  # how long `close` waits for the batch in flight
# The book (LearnedAddressBook) is a cache of what needs no re-sending; the kernel's maps hold up to
# LEARNED_MAP_SIZE addresses each. A quarter of one map covers an office's answered-again working set
# many times over (a browser start resolves a few dozen names; each client may teach 300 a minute) in
# 6.5 MiB (104 bytes an IPv4 entry, 116 IPv6: bench/learned_writes.py), where the previous book took
# 42 MiB at 262,144; a forgotten address costs one more element (~2.3 µs) in a later batch.
BOOK_ENTRIES = LEARNED_MAP_SIZE // 4
FORGET_SHARE = 16  # a full book forgets its oldest 1/16 at once
APP_BITS = 16
APP_MASK = (1 << APP_BITS) - 1

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LearnedMaps(Protocol):
    """The kernel side: write one batch of learned elements, all maps in one transaction, each element
    replacing whatever its map holds for its address."""

    def write_learned(self, batches: Sequence[tuple[str, list[LearnedElement]]]) -> None: ...


class LearnedAddressBook:
    """What the writer put in the learned maps lately (app and expiry), so that an answer that changes
    nothing is not sent again: the same app, still far from expiring. Popular names are answered all
    day long; most answers change nothing.

    Only a cache: the kernel side replaces whatever the maps hold for an address (destroy + add in one
    transaction, apply/learned_netlink.py), so an address the book forgot is at worst sent again, never
    left with a wrong app. Bounded, then: at `max_entries` the least recently written sixteenth is
    forgotten at once (one pass over the oldest keys, amortised over the next sixteenth of writes).
    Compact: an int key (the address, IPv6 tagged above bit 128) and an int value (expiry second and an
    interned app id), 104 bytes an IPv4 entry with the dict's own share (bench/learned_writes.py).
    """

    def __init__(self, max_entries: int = BOOK_ENTRIES) -> None:
        self._entries: dict[int, int] = {}  # address key -> expires (whole seconds) << APP_BITS | app id
        self._app_ids: dict[str, int] = {}  # interned: apps the table numbers, a few hundred at most
        self.max_entries = max_entries
        self.forgotten = 0  # entries dropped to stay within max_entries

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def key(address: IPAddress) -> int:
        return int(address) | (address.version == 6) << 128

    def stale(self, entries: Iterable[LearnedAddress], now: float) -> list[LearnedAddress]:
        """Entries worth sending: unknown to the book, of another app, or past half their life."""
        fresh = []
        for entry in entries:
            value = self._entries.get(self.key(entry.address))
            if value is not None and value & APP_MASK == self._app_ids.get(entry.app) \
                    and (value >> APP_BITS) - now > entry.ttl / 2:
                continue  # the same app, still comfortably alive in the kernel
            fresh.append(entry)
        return fresh

    def record(self, entries: Iterable[LearnedAddress], now: float) -> None:
        entries_by_key = self._entries
        for entry in entries:
            app_id = self._app_id(entry.app)
            key = self.key(entry.address)
            entries_by_key.pop(key, None)  # to the end: the order is the order of writing
            entries_by_key[key] = (int(now) + entry.ttl) << APP_BITS | app_id
        if len(entries_by_key) > self.max_entries:
            self._forget_oldest(len(entries_by_key) - self.max_entries + self.max_entries // FORGET_SHARE)

    def _app_id(self, app: str) -> int:
        app_id = self._app_ids.get(app)
        if app_id is None:
            if len(self._app_ids) > APP_MASK:  # never two apps under one id: start the book afresh
                self.forgotten += len(self._entries)
                self._entries.clear()
                self._app_ids.clear()
            app_id = self._app_ids[app] = len(self._app_ids)
        return app_id

    def _forget_oldest(self, count: int) -> None:
        for key in list(itertools.islice(self._entries, count)):
            del self._entries[key]
        self.forgotten += count


@dataclass
class LearnedWriteStats:
    """What the writer did, for the metrics (plain counts: read from the scrape thread)."""

    written: int = 0  # addresses written into the kernel (new, changed or refreshed)
    batches: int = 0  # nft transactions
    overflowed: int = 0  # addresses dropped because MAX_PENDING were waiting
    failed: int = 0  # addresses of batches the kernel refused
    pending: int = 0  # addresses waiting now or being written: 0 once all that was handed over is written
    book_entries: int = 0  # addresses the writer remembers writing (LearnedAddressBook)
    forgotten: int = 0  # addresses the book forgot to stay within its bound


class LearnedWriter:
    """A bounded, coalescing queue of learned addresses and the thread that writes them."""

    def __init__(self, kernel: LearnedMaps, clock: Callable[[], float], max_pending: int = MAX_PENDING,
                 max_batch: int = MAX_BATCH, book_entries: int = BOOK_ENTRIES) -> None:
        self._kernel = kernel
        self._clock = clock
        self._max_pending = max_pending
        self._max_batch = max_batch
        self._pending: dict[IPAddress, LearnedAddress] = {}  # insertion order: oldest first
        self._wakeup = threading.Condition()
        # Held while a batch goes in, and by the applier around a table swap (`paused`).
        self._kernel_turn = threading.Lock()
        self._app_numbers: Mapping[str, int] = {}
        self._book = LearnedAddressBook(book_entries)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = LearnedWriteStats()
        # Told each batch once it is in the kernel, on the writer's thread: the HA master passes it
        # on to its backup (daemon/ha_state_sync.py), which must only hand it over between threads.
        self.on_written: Callable[[list[LearnedElement]], None] | None = None

    # --- the verdict loop's side: never waits on the kernel ---
    def submit(self, entries: Iterable[LearnedAddress]) -> None:
        with self._wakeup:
            for entry in entries:
                if entry.address in self._pending or len(self._pending) < self._max_pending:
                    self._pending[entry.address] = entry  # the newest answer for an address wins
                else:
                    self.stats.overflowed += 1
            self.stats.pending = len(self._pending)
            self._wakeup.notify()

    # --- the applier's side ---
    def use_numbers(self, app_numbers: Mapping[str, int]) -> None:
        """The app numbers of the table now in force; call it while the writer is `paused`."""
        self._app_numbers = dict(app_numbers)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """No batch goes in while the block runs (it waits for the one in flight)."""
        with self._kernel_turn:
            yield

    def start(self) -> None:
        """Start the writer thread (once the first table is in force)."""
        with self._wakeup:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(target=self._run, name="learned-writer", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the thread; what still waits is dropped (the table goes away with it)."""
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify()
            thread = self._thread
        if thread is not None:
            thread.join(STOP_SECONDS)

    # --- the writer thread ---
    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._pending and not self._stopping:
                    self._wakeup.wait()
                if self._stopping:
                    return
            self.write_next_batch()

    def write_next_batch(self) -> bool:
        """Write the oldest waiting addresses, at most one batch, in one nft transaction; False if
        none waited. The thread's step (tests call it directly, without the thread)."""
        with self._wakeup:
            batch = [self._pending.pop(address) for address in list(self._pending)[:self._max_batch]]
        if not batch:
            return False
        self._write(batch)
        with self._wakeup:
            self.stats.pending = len(self._pending)  # the batch counted as pending until it went in
        return True

    def _write(self, batch: list[LearnedAddress]) -> None:
        with self._kernel_turn:
            numbers = self._app_numbers
            now = self._clock()
            # An app the table in force does not number has no set_app chain to go to.
            fresh = self._book.stale([e for e in batch if e.app in numbers], now)
            if not fresh:
                return  # all of them still comfortably alive in the kernel as they are
            maps = []
            for version, map_name in ((4, MAP_LEARNED_V4), (6, MAP_LEARNED_V6)):
                elements = [LearnedElement(str(e.address), set_app_chain(numbers[e.app]), e.ttl)
                            for e in fresh if e.address.version == version]
                if elements:
                    maps.append((map_name, elements))
            try:
                self._kernel.write_learned(maps)
            except NftError as exc:
                self.stats.failed += len(fresh)
                log.warning("event=learn_failed addresses=%d error=%r", len(fresh), str(exc))
                return
            self._book.record(fresh, now)
            self.stats.batches += 1
            self.stats.written += len(fresh)
            self.stats.book_entries = len(self._book)
            self.stats.forgotten = self._book.forgotten
        if self.on_written is not None:
            self.on_written([element for _map, elements in maps for element in elements])


def kernel_learned_writer(clock: Callable[[], float]) -> LearnedWriter:
    """A writer with a libnftables context of its own: a context is not safe to share between threads."""
    return LearnedWriter(KernelLearnedMaps(NftKernel()), clock)
