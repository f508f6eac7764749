"""Apply HTB trees over gatewayd's own batched rtnetlink (apply/tc_netlink.py): root, classes, leaves and reads.

A reload sends only the difference with the tree in force: classes that
are new are added, changed ones changed in place (their queues and counters
survive), gone or moved ones deleted; a new default class rebuilds the tree.
The leaf queue is the best kind the kernel has (probed once, on the first
leaf, by apply/features.py); a FIFO leaf gets a byte limit sized to its ceiling.

Per-host classes are made on demand, not with the tree: HTB's class creation
costs time in proportion to the classes already in the qdisc (the kernel
walks them all on every add), so 5,000 hosts up front took 2.1 s per port and
60,000 would take minutes. `apply` keeps the host classes already made and
changes them in place; `make_host_classes` adds those of hosts that have
just sent a packet (daemon/host_classes.py finds them, compile/qos_rules.py
has the kernel note them).
"""

from __future__ import annotations

import errno
import logging
import socket
from dataclasses import dataclass

from gatewayd.apply.features import choose_leaf_qdisc
from gatewayd.apply.tc_netlink import (
    TC_H_ROOT,
    HtbParams,
    Request,
    TcBatch,
    TcBatchError,
    class_request,
    delete_root_request,
    qdisc_request,
    root_htb_request,
)
from gatewayd.compile.tc_tree import FIFO_KIND, HTB_MAJOR, HtbClass, InterfaceTree

log = logging.getLogger("gatewayd.tc")

UNSUPPORTED = {errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP}


FIFO_QUEUE_SECONDS = 0.05  # a FIFO leaf holds about this much at its ceiling: bounded bufferbloat
GRO_MAX_BYTES = 65536  # what one packet may weigh on a router: NICs and veths hand up GRO aggregates
FIFO_FLOOR_AGGREGATES = 4  # a few flows' bursts at once; with less, a squeezed bulk class drops whole aggregates


class TcError(RuntimeError):
    pass


def fifo_limit_bytes(ceil_bps: int) -> int:
    """Bytes a FIFO leaf may hold: ~50 ms at the class's ceiling, never less than a few GRO aggregates.

    Counted in bytes, not packets: a forwarded packet can be a 64 KiB GRO
    aggregate, so 16 "packets" at 2 Mbit/s could be 1 MiB, 4 s of waiting for
    the host's next packet (measured: over 1 s at 8 Mbit/s). Below ~42 Mbit/s
    the floor sets the queue (about 0.26 s at 8 Mbit/s): one aggregate
    dropped is 44 segments lost at once, and a bulk class squeezed to its
    guarantee by 4 streams fell to 65% of it with a 2-aggregate floor. cake
    or fq_codel, where the kernel has them, do better at low rates.
    """
    return max(FIFO_FLOOR_AGGREGATES * GRO_MAX_BYTES, int(ceil_bps / 8 * FIFO_QUEUE_SECONDS))


def handle(major: int, minor: int) -> int:
    return (major << 16) | minor


@dataclass(frozen=True)
class ClassStats:
    interface: str
    minor: int
    bytes: int
    packets: int
    drops: int
    overlimits: int
    backlog_bytes: int
    rate_bytes_per_second: int = 0  # the kernel's rate estimate (classes other than per-host ones)


class TcKernel:
    def __init__(self) -> None:
        self._batch: TcBatch | None = None
        self._leaf_kind: str | None = None
        self._hosts_made: dict[str, set[int]] = {}  # interface -> minors of the per-host classes in the kernel

    def close(self) -> None:
        if self._batch is not None:
            self._batch.close()

    def ifindex(self, name: str) -> int:
        try:
            return socket.if_nametoindex(name)
        except OSError:
            raise TcError(f"interface {name} does not exist") from None

    def apply(self, trees: tuple[InterfaceTree, ...], previous: tuple[InterfaceTree, ...] = ()) -> None:
        """Install the trees; against `previous` (what is in the kernel now) only the differences are sent."""
        before = {t.interface: t for t in previous}
        for tree in trees:
            try:
                old = before.get(tree.interface)
                if old and old.default_minor == tree.default_minor and self._installed(tree):
                    self._sync(tree, self._in_kernel(old))
                else:
                    self._rebuild(tree)
            except TcBatchError as exc:
                raise TcError(f"tc on {tree.interface}: {exc}") from exc

    def make_host_classes(self, trees: tuple[InterfaceTree, ...], minors: set[int]) -> int:
        """Add the per-host classes (and leaves) with these minors that are not made yet; how many were added."""
        added = 0
        for tree in trees:
            made = self._hosts_made.setdefault(tree.interface, set())
            hosts = [c for c in tree.classes if c.role == "host" and c.minor in minors and c.minor not in made]
            if not hosts:
                continue
            index = self.ifindex(tree.interface)
            try:
                self._batch_socket().run(self._class_request("add", index, c) for c in hosts)
                self._add_leaves(index, hosts)
            except TcBatchError as exc:
                # Part of the batch may be in: note what the kernel holds, so the retry on the
                # next poll adds only the rest instead of failing on "exists" for ever.
                in_kernel = {item.handle & 0xFFFF for item in self._batch_socket().classes(index)}
                made.update(c.minor for c in hosts if c.minor in in_kernel)
                raise TcError(f"tc on {tree.interface}: {exc}") from exc
            made.update(c.minor for c in hosts)
            added += len(hosts)
        return added

    def hosts_made(self, trees: tuple[InterfaceTree, ...]) -> set[int]:
        """Minors of the hosts whose classes are in the kernel on every tree that limits them."""
        wanted: dict[int, int] = {}
        made: dict[int, int] = {}
        for tree in trees:
            for c in tree.classes:
                if c.role == "host":
                    wanted[c.minor] = wanted.get(c.minor, 0) + 1
                    if c.minor in self._hosts_made.get(tree.interface, ()):
                        made[c.minor] = made.get(c.minor, 0) + 1
        return {minor for minor, count in made.items() if count == wanted[minor]}

    def _in_kernel(self, tree: InterfaceTree) -> dict[int, HtbClass]:
        made = self._hosts_made.get(tree.interface, set())
        return {c.minor: c for c in tree.classes if c.role != "host" or c.minor in made}

    def remove(self, interfaces: list[str]) -> None:
        for name in interfaces:
            self._hosts_made.pop(name, None)
            try:
                self._batch_socket().run([delete_root_request(self.ifindex(name))])
            except (TcBatchError, TcError):
                pass  # nothing of ours there

    def _installed(self, tree: InterfaceTree) -> bool:
        # Our own dump parser: pyroute2 takes seconds to decode thousands of leaf qdiscs.
        for qdisc in self._batch_socket().qdiscs(self.ifindex(tree.interface)):
            if qdisc.parent == TC_H_ROOT:
                return qdisc.kind == "htb" and qdisc.handle == handle(HTB_MAJOR, 0)
        return False

    def _rebuild(self, tree: InterfaceTree) -> None:
        index = self.ifindex(tree.interface)
        try:
            self._batch_socket().run([delete_root_request(index)])
        except TcBatchError:
            pass  # no root qdisc yet
        self._batch_socket().run([root_htb_request(index, handle(HTB_MAJOR, 0), tree.default_minor)])
        self._hosts_made[tree.interface] = set()
        self._sync(tree, {})

    def _sync(self, tree: InterfaceTree, installed: dict[int, HtbClass]) -> None:
        """Delete, add and change classes so the kernel holds `tree`; untouched classes keep their queues.

        Host classes not made yet stay unmade (see make_host_classes).
        """
        index = self.ifindex(tree.interface)
        made = self._hosts_made.setdefault(tree.interface, set())
        wanted = {c.minor: c for c in tree.classes if c.role != "host" or c.minor in made}
        moved = {minor for minor, old in installed.items()
                 if minor not in wanted or wanted[minor].parent_minor != old.parent_minor
                 or wanted[minor].leaf != old.leaf}
        # Children before parents: HTB refuses to delete a class that still has children.
        doomed = sorted((installed[m] for m in moved), key=lambda c: (not c.leaf, c.parent_minor == 0))
        requests = [class_request("delete", index, handle(HTB_MAJOR, c.minor), handle(HTB_MAJOR, c.parent_minor))
                    for c in doomed]
        in_order = [c for c in tree.classes if c.minor in wanted]  # tree order: parents first
        added = [c for c in in_order if c.minor not in installed or c.minor in moved]
        changed = [c for c in in_order
                   if c.minor in installed and c.minor not in moved
                   and self._params(installed[c.minor]) != self._params(c)]
        requests += [self._class_request("add", index, c) for c in added]
        requests += [self._class_request("change", index, c) for c in changed]
        self._batch_socket().run(requests)
        made.intersection_update(wanted)
        self._add_leaves(index, [c for c in added if c.leaf])

    def _add_leaves(self, index: int, leaves: list[HtbClass]) -> None:
        if leaves and self._leaf_kind is None:
            self._add_leaf(index, leaves[0])  # probes the best kind the kernel has
            leaves = leaves[1:]
        self._batch_socket().run(self._leaf_request(index, c) for c in leaves)

    def _batch_socket(self) -> TcBatch:
        if self._batch is None:
            self._batch = TcBatch()
        return self._batch

    @staticmethod
    def _params(htb_class: HtbClass) -> HtbParams:
        return HtbParams(htb_class.rate_bps, htb_class.ceil_bps, htb_class.rate_burst_bytes, htb_class.burst_bytes,
                         htb_class.quantum_bytes, htb_class.priority)

    def _class_request(self, verb: str, index: int, htb_class: HtbClass) -> Request:
        return class_request(verb, index, handle(HTB_MAJOR, htb_class.minor),
                             handle(HTB_MAJOR, htb_class.parent_minor), self._params(htb_class),
                             rate_estimator=htb_class.role != "host")  # per-host rates are never exported

    def _leaf_request(self, index: int, htb_class: HtbClass, kind: str | None = None) -> Request:
        kind = kind or self._leaf_kind or FIFO_KIND
        return qdisc_request(index, handle(htb_class.minor, 0), handle(HTB_MAJOR, htb_class.minor), kind,
                             fifo_limit=fifo_limit_bytes(htb_class.ceil_bps) if kind == FIFO_KIND else None)

    def _add_leaf(self, index: int, htb_class: HtbClass) -> None:
        """Add the first leaf with the best kind the kernel has; that kind serves every later leaf."""

        def add_leaf(kind: str) -> bool:
            try:
                self._batch_socket().run([self._leaf_request(index, htb_class, kind)])
            except TcBatchError as exc:
                if exc.code in UNSUPPORTED and kind != FIFO_KIND:
                    return False
                raise
            return True

        self._leaf_kind = choose_leaf_qdisc(add_leaf)

    @property
    def leaf_kind(self) -> str | None:
        return self._leaf_kind

    def class_stats(self, interface: str) -> list[ClassStats]:
        stats = []
        for item in self._batch_socket().classes(self.ifindex(interface)):
            if item.kind != "htb":
                continue
            stats.append(ClassStats(interface, item.handle & 0xFFFF, item.bytes, item.packets, item.drops,
                                    item.overlimits, item.backlog_bytes, item.rate_bytes_per_second))
        return stats
