"""Apply HTB trees with pyroute2.

A reload whose tree has the same classes changes their rates in place, so
queued packets and class counters survive; a tree of another shape is
rebuilt. The leaf queue is the best kind the kernel has (probed once).
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from gatewayd.compile.tc_tree import HTB_MAJOR, LEAF_PREFERENCE, HtbClass, InterfaceTree

log = logging.getLogger("gatewayd.tc")

UNSUPPORTED = {errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTSUP}


class TcError(RuntimeError):
    pass


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


class TcKernel:
    def __init__(self) -> None:
        self._ipr = IPRoute()
        self._leaf_kind: str | None = None

    def close(self) -> None:
        self._ipr.close()

    def ifindex(self, name: str) -> int:
        found = self._ipr.link_lookup(ifname=name)
        if not found:
            raise TcError(f"interface {name} does not exist")
        return found[0]

    def apply(self, trees: tuple[InterfaceTree, ...], previous: tuple[InterfaceTree, ...] = ()) -> None:
        before = {t.interface: t for t in previous}
        for tree in trees:
            try:
                old = before.get(tree.interface)
                if old and self._same_shape(old, tree) and self._installed(tree):
                    self._change_classes(tree)
                else:
                    self._rebuild(tree)
            except NetlinkError as exc:
                raise TcError(f"tc on {tree.interface}: {exc}") from exc

    def remove(self, interfaces: list[str]) -> None:
        for name in interfaces:
            try:
                self._ipr.tc("del", index=self.ifindex(name), handle=0, parent=0xFFFFFFFF)
            except (NetlinkError, TcError):
                pass  # nothing of ours there

    @staticmethod
    def _same_shape(a: InterfaceTree, b: InterfaceTree) -> bool:
        return ([c.minor for c in a.classes] == [c.minor for c in b.classes]
                and a.default_minor == b.default_minor)

    def _installed(self, tree: InterfaceTree) -> bool:
        index = self.ifindex(tree.interface)
        for qdisc in self._ipr.get_qdiscs(index=index):
            if qdisc.get("parent") == 0xFFFFFFFF:
                return qdisc.get_attr("TCA_KIND") == "htb" and qdisc.get("handle") == handle(HTB_MAJOR, 0)
        return False

    def _rebuild(self, tree: InterfaceTree) -> None:
        index = self.ifindex(tree.interface)
        try:
            self._ipr.tc("del", index=index, handle=0, parent=0xFFFFFFFF)
        except NetlinkError:
            pass  # no root qdisc yet
        self._ipr.tc("add", "htb", index=index, handle=handle(HTB_MAJOR, 0),
                     default=tree.default_minor)
        for htb_class in tree.classes:
            self._ipr.tc("add-class", "htb", index=index, handle=handle(HTB_MAJOR, htb_class.minor),
                         parent=handle(HTB_MAJOR, htb_class.parent_minor), **self._class_args(htb_class))
            if htb_class.leaf:
                self._add_leaf(index, htb_class)

    def _change_classes(self, tree: InterfaceTree) -> None:
        index = self.ifindex(tree.interface)
        for htb_class in tree.classes:
            self._ipr.tc("change-class", "htb", index=index, handle=handle(HTB_MAJOR, htb_class.minor),
                         parent=handle(HTB_MAJOR, htb_class.parent_minor), **self._class_args(htb_class))

    @staticmethod
    def _class_args(htb_class: HtbClass) -> dict[str, object]:
        return {"rate": f"{htb_class.rate_bps}bit", "ceil": f"{htb_class.ceil_bps}bit",
                "prio": htb_class.priority, "quantum": htb_class.quantum_bytes,
                "burst": htb_class.burst_bytes, "cburst": htb_class.burst_bytes}

    def _add_leaf(self, index: int, htb_class: HtbClass) -> None:
        parent = handle(HTB_MAJOR, htb_class.minor)
        leaf_handle = handle(htb_class.minor, 0)
        kinds = [self._leaf_kind] if self._leaf_kind else list(LEAF_PREFERENCE)
        for kind in kinds:
            try:
                args: dict[str, object] = {"limit": 1000} if kind == "pfifo" else {}
                self._ipr.tc("add", kind, index=index, handle=leaf_handle, parent=parent, **args)
            except NetlinkError as exc:
                if exc.code in UNSUPPORTED or kind not in ("pfifo",):
                    continue
                raise
            if self._leaf_kind is None:
                self._leaf_kind = kind
                if kind != LEAF_PREFERENCE[0]:
                    log.warning("event=leaf_qdisc_fallback chosen=%s preferred=%s "
                                "reason=\"kernel lacks the better kinds; queues are FIFO, "
                                "latency under load depends on HTB priorities alone\"",
                                kind, ",".join(LEAF_PREFERENCE[:LEAF_PREFERENCE.index(kind)]))
            return
        raise TcError(f"no leaf qdisc kind works here (tried {', '.join(kinds)})")

    @property
    def leaf_kind(self) -> str | None:
        return self._leaf_kind

    def class_stats(self, interface: str) -> list[ClassStats]:
        stats = []
        for msg in self._ipr.get_classes(index=self.ifindex(interface)):
            if msg.get_attr("TCA_KIND") != "htb":
                continue
            basic = msg.get_attr("TCA_STATS2")
            counts = basic.get_attr("TCA_STATS_BASIC") if basic else None
            queue = basic.get_attr("TCA_STATS_QUEUE") if basic else None
            stats.append(ClassStats(
                interface, msg.get("handle") & 0xFFFF,
                counts.get("bytes", 0) if counts else 0, counts.get("packets", 0) if counts else 0,
                queue.get("drops", 0) if queue else 0, queue.get("overlimits", 0) if queue else 0,
                queue.get("backlog", 0) if queue else 0))
        return stats
