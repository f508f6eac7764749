"""Compile the policy's QoS classes into HTB trees, one per shaped interface.

Upload is shaped where it leaves the box (WAN egress), download where it
leaves towards the office (each LAN interface's egress). Both trees use the
handle 1: and the same minors, so one skb priority (set by nft from the ct
mark, see compile/ruleset.py) selects the class on either side: HTB reads
skb->priority as a class id of its own, so no tc filter is needed.

The leaf queue kind is decided at apply time, after probing the kernel
(apply/probe.py); the plan says which kinds it prefers.
"""

from __future__ import annotations

from dataclasses import dataclass

from gatewayd.compile.numbering import Numbering
from gatewayd.policy.model import Policy

HTB_MAJOR = 1
ROOT_MINOR = 1
LEAF_PREFERENCE = ("cake", "fq_codel", "sfq", "pfifo")
MTU_BYTES = 1514
MIN_RATE_BPS = 8_000  # HTB needs a positive rate; "no guarantee" becomes a token one


def classid(major: int, minor: int) -> str:
    return f"{major:x}:{minor:x}" if minor else f"{major:x}:"


@dataclass(frozen=True)
class HtbClass:
    name: str
    minor: int
    parent_minor: int
    rate_bps: int
    ceil_bps: int
    priority: int  # HTB prio 0..7, lower is served first when borrowing
    quantum_bytes: int
    burst_bytes: int
    leaf: bool


@dataclass(frozen=True)
class InterfaceTree:
    interface: str
    direction: str  # "upload" or "download"
    link_bps: int
    default_minor: int
    classes: tuple[HtbClass, ...]

    def render(self) -> str:
        lines = [f"# {self.direction} on {self.interface} ({self.link_bps / 1e6:g} Mbit/s)",
                 f"tc qdisc replace dev {self.interface} root handle {HTB_MAJOR}: htb "
                 f"default {self.default_minor:x}"]
        for c in self.classes:
            lines.append(
                f"tc class replace dev {self.interface} parent {classid(HTB_MAJOR, c.parent_minor)} "
                f"classid {classid(HTB_MAJOR, c.minor)} htb rate {c.rate_bps}bit ceil {c.ceil_bps}bit "
                f"prio {c.priority} quantum {c.quantum_bytes} burst {c.burst_bytes} cburst {c.burst_bytes}"
                f"  # {c.name}")
            if c.leaf:
                lines.append(f"tc qdisc replace dev {self.interface} parent {classid(HTB_MAJOR, c.minor)} "
                             f"handle {c.minor:x}: <leaf: first of {', '.join(LEAF_PREFERENCE)}>")
        return "\n".join(lines)


def quantum_for(rate_bps: int) -> int:
    """Bytes a class may send per round: proportional to its rate, within HTB's sane range.

    HTB warns ("quantum is big/small") outside about 1000..200000 bytes.
    """
    return max(MTU_BYTES, min(200_000, rate_bps // 8 // 100))


def burst_for(rate_bps: int) -> int:
    """About 10 ms at the rate and never under two full frames, so a timer tick does not starve it."""
    return max(2 * MTU_BYTES, rate_bps // 8 // 100)


def build_tree(policy: Policy, numbering: Numbering, interface: str, direction: str,
               link_bps: int) -> InterfaceTree:
    classes = [HtbClass("link", ROOT_MINOR, 0, link_bps, link_bps, 0, quantum_for(link_bps),
                        burst_for(link_bps), leaf=False)]
    for name, qos_class in policy.classes.items():
        rate = max(MIN_RATE_BPS, qos_class.guaranteed.resolve(link_bps))
        ceil = max(rate, min(link_bps, qos_class.limit.resolve(link_bps)))
        classes.append(HtbClass(name, numbering.tc_minor(name), ROOT_MINOR, rate, ceil,
                                qos_class.priority, quantum_for(rate), burst_for(ceil), leaf=True))
    return InterfaceTree(interface, direction, link_bps, numbering.tc_minor(policy.default_class),
                         tuple(classes))


def build_trees(policy: Policy, numbering: Numbering) -> tuple[InterfaceTree, ...]:
    interfaces = policy.interfaces
    trees = [build_tree(policy, numbering, interfaces.wan, "upload", interfaces.upload_bps)]
    trees.extend(build_tree(policy, numbering, lan, "download", interfaces.download_bps)
                 for lan in interfaces.lan)
    return tuple(trees)
