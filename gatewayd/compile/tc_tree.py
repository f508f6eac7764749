"""Compile the policy's QoS into HTB trees, one per shaped interface.

Upload is shaped where it leaves the box (each WAN link's egress, at that
link's rate), download where it leaves towards the office (each LAN
interface's egress). Every tree uses the
handle 1: and the same minors, so one skb priority (set by nft from the ct
mark and the host maps, see compile/qos_rules.py) selects the class on either
side: HTB reads skb->priority as a class id of its own, so no tc filter is
needed.

Layout (HTB allows 8 levels; this uses 3 below the root):

    1:1  link (rate = ceil = the link)
     |-- 1:3   control packets of every class: pure TCP ACKs, handshakes, DNS
     |-- 1:11..1:2f  the policy's classes          (no group has bandwidth settings)
     or, when some groups do:
     |-- 1:2   others: every group without settings, guarantee = what groups leave
     |    `-- 1:11..1:2f  the policy's classes
     `-- 1:1gg group gg (gg = group number 2..63, hex 0x102..0x13f)
          |-- 1:(0x800 | gg<<5 | c)  the policy's class c, split inside the group
          `-- 1:(0x1000 + slot)      one per limited host (compile/host_limits.py)

Minor numbering, 16 bits: 0x1 link, 0x2 others, 0x3 control, 0x11-0x2f shared class leaves
(0x10 + class index 1..31), 0x102-0x13f groups, 0x840-0xfff group class leaves
(group 2..63 x class 1..31), 0x1000-0xffff per-host classes (61,440 slots).
Inside a group the classes divide the group's guarantee in the same
proportions as they divide the link; ceilings are capped by the group's. A
limited host's packets share one queue (its leaf qdisc); the class split
applies to the rest of the group's traffic.

The control leaf exists because a FIFO leaf (all this kernel offers when
cake, fq_codel and sfq are missing) puts a download's ACKs behind the same
host's full-size upload packets: with both directions saturated, the download
fell to 2/3 of its rate. Every shaper in the field (cake's ack-filter and
diffserv tins, OpenWrt's sqm, LibreQoS) sends small control packets first;
here nft picks them (compile/qos_rules.py) and this one class serves them.
It is a tree-wide leaf rather than one per class so a shaped group adds no
classes: its control packets bypass the group's and the hosts' ceilings, which
costs at most CONTROL_CEIL_SHARE of the link, and only in packets under
CONTROL_PACKET_BYTES. Its priority stays behind the best policy class, so the
realtime class is still served first.

The leaf queue kind is decided at apply time, after probing the kernel
(apply/tc.py); the plan says which kinds it prefers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gatewayd.compile.host_limits import HostSlots
from gatewayd.compile.numbering import Numbering
from gatewayd.policy.bandwidth import group_pair, host_pair
from gatewayd.policy.model import Direction, Policy

HTB_MAJOR = 1
ROOT_MINOR = 1
OTHERS_MINOR = 2
CONTROL_MINOR = 3
CONTROL_RATE_SHARE = 0.05  # an ACK stream is ~2-5% of the data it acknowledges (one ACK per 1-2 segments)
CONTROL_CEIL_SHARE = 0.25  # a flood of tiny packets takes at most this much from what others could borrow
GROUP_MINOR_BASE = 0x100
GROUP_LEAF_BASE = 0x800
FIFO_KIND = "bfifo"  # the fallback every kernel has: a byte-limited FIFO
LEAF_PREFERENCE = ("cake", "fq_codel", "sfq", FIFO_KIND)
MTU_BYTES = 1514
MIN_RATE_BPS = 8_000  # HTB needs a positive rate; "no guarantee" becomes a token one


def classid(major: int, minor: int) -> str:
    return f"{major:x}:{minor:x}" if minor else f"{major:x}:"


def group_minor(group_number: int) -> int:
    return GROUP_MINOR_BASE | group_number


def group_leaf_minor(group_number: int, class_index: int) -> int:
    return GROUP_LEAF_BASE | (group_number << 5) | class_index


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
    group: str = ""  # the policy group whose subtree holds it ("" = shared)
    qos_class: str = ""  # the policy class a leaf serves ("" for hosts and inner classes)
    role: str = "class"  # link, others, control, group, class or host

    @property
    def rate_burst_bytes(self) -> int:
        """The burst of the rate bucket, sized on the rate, not the ceiling.

        HTB keeps a burst as the time it takes at that bucket's rate: a 1 Gbit/s
        ceiling's burst over a token guarantee would be minutes, past the u32 the
        kernel stores it in.
        """
        return min(self.burst_bytes, burst_for(self.rate_bps))


@dataclass(frozen=True)
class InterfaceTree:
    interface: str
    direction: Direction
    link_bps: int
    default_minor: int
    classes: tuple[HtbClass, ...]

    def render(self) -> str:
        lines = [f"# {self.direction} on {self.interface} ({self.link_bps / 1e6:g} Mbit/s)",
                 f"tc qdisc replace dev {self.interface} root handle {HTB_MAJOR}: htb "
                 f"default {self.default_minor:x}"]
        if any(c.role == "host" for c in self.classes):
            lines.append("# each 'host' class below (and its leaf) is made on that host's first packet")
        for c in self.classes:
            lines.append(
                f"tc class replace dev {self.interface} parent {classid(HTB_MAJOR, c.parent_minor)} "
                f"classid {classid(HTB_MAJOR, c.minor)} htb rate {c.rate_bps}bit ceil {c.ceil_bps}bit "
                f"prio {c.priority} quantum {c.quantum_bytes} burst {c.rate_burst_bytes} cburst {c.burst_bytes}"
                f"  # {c.name}" + (f" ({c.group})" if c.group and c.role != "group" else ""))
            if c.leaf:
                lines.append(f"tc qdisc replace dev {self.interface} parent {classid(HTB_MAJOR, c.minor)} "
                             f"handle {c.minor:x}: <leaf: first of {', '.join(LEAF_PREFERENCE)}>")
        return "\n".join(lines)

    def by_minor(self) -> dict[int, HtbClass]:
        return {c.minor: c for c in self.classes}


def quantum_for(rate_bps: int) -> int:
    """Bytes a class may send per round: proportional to its rate, within HTB's sane range.

    HTB warns ("quantum is big/small") outside about 1000..200000 bytes.
    """
    return max(MTU_BYTES, min(200_000, rate_bps // 8 // 100))


def burst_for(rate_bps: int) -> int:
    """About 1 ms at the rate and never under two full frames (HTB's hrtimer needs no more).

    What a class sends above its rate in one go lands in the modem's queue
    behind gatewayd: a 10 ms burst there is 10 ms of delay for the next call
    packet, so bursts stay short.
    """
    return max(2 * MTU_BYTES, rate_bps // 8 // 1000)


def scaled_leaves(policy: Policy, numbering: Numbering, direction: Direction, link_bps: int,
                  parent: HtbClass, minor_of: Callable[[str], int], group: str = "") -> list[HtbClass]:
    """The policy's classes under `parent`, dividing its guarantee as they divide the link."""
    leaves = []
    for name, qos_class in policy.classes.items():
        guaranteed, limit = qos_class.rates(direction)
        rate = max(MIN_RATE_BPS, guaranteed.resolve(link_bps) * parent.rate_bps // link_bps)
        ceil = max(rate, min(parent.ceil_bps, limit.resolve(link_bps)))
        leaves.append(HtbClass(name, minor_of(name), parent.minor, rate, ceil, qos_class.priority,
                               quantum_for(rate), burst_for(ceil), leaf=True, group=group, qos_class=name))
    return leaves


def link_class(link_bps: int) -> HtbClass:
    return HtbClass("link", ROOT_MINOR, 0, link_bps, link_bps, 0, quantum_for(link_bps),
                    burst_for(link_bps), leaf=False, role="link")


def control_class(policy: Policy, link_bps: int) -> HtbClass:
    """The leaf for small control packets of every class; see the module's docstring.

    Its HTB priority is one behind the best class (never behind the worst), so
    it borrows before bulk and default but after realtime.
    """
    priorities = [c.priority for c in policy.classes.values()]
    priority = min(min(priorities) + 1, max(priorities))
    rate = max(MIN_RATE_BPS, int(link_bps * CONTROL_RATE_SHARE))
    ceil = max(rate, int(link_bps * CONTROL_CEIL_SHARE))
    return HtbClass("control packets", CONTROL_MINOR, ROOT_MINOR, rate, ceil, priority, quantum_for(rate),
                    burst_for(ceil), leaf=True, role="control")


def inner_class(name: str, minor: int, rate: int, ceil: int, role: str, group: str = "") -> HtbClass:
    rate = max(MIN_RATE_BPS, rate)
    ceil = max(rate, ceil)
    return HtbClass(name, minor, ROOT_MINOR, rate, ceil, 0, quantum_for(rate), burst_for(ceil),
                    leaf=False, role=role, group=group)


def build_tree(policy: Policy, numbering: Numbering, interface: str, direction: Direction,
               link_bps: int, hosts: HostSlots | None = None) -> InterfaceTree:
    hosts = hosts or HostSlots()
    link = link_class(link_bps)
    control = control_class(policy, link_bps)
    default_minor = numbering.tc_minor(policy.default_class)
    shaped = {name: group for name, group in policy.groups.items() if group.qos.shaped}
    if not shaped:  # the flat tree: every class straight under the link
        leaves = scaled_leaves(policy, numbering, direction, link_bps, link, numbering.tc_minor)
        return InterfaceTree(interface, direction, link_bps, default_minor, (link, control, *leaves))

    group_trees: list[HtbClass] = []
    guaranteed_to_groups = 0
    default_priority = policy.classes[policy.default_class].priority
    for name, group in shaped.items():
        number = numbering.groups.numbers[name]
        pair = group_pair(group, direction, link_bps)
        members = hosts.in_group(name, direction)
        host_rates = {h.address: host_pair(group, direction, link_bps, h.address) for h in members}
        hosts_guaranteed = sum(r.guaranteed_bps for r in host_rates.values())
        group_class = inner_class(f"group {name}", group_minor(number),
                                  max(pair.guaranteed_bps, hosts_guaranteed), min(link_bps, pair.limit_bps),
                                  "group", name)
        guaranteed_to_groups += group_class.rate_bps
        group_trees.append(group_class)
        def leaf_minor(class_name: str, group_number: int = number) -> int:
            return group_leaf_minor(group_number, numbering.classes[class_name])

        group_trees.extend(scaled_leaves(policy, numbering, direction, link_bps, group_class, leaf_minor, name))
        for host in members:
            rates = host_rates[host.address]
            rate = max(MIN_RATE_BPS, rates.guaranteed_bps)
            ceil = max(rate, min(group_class.ceil_bps, rates.limit_bps))
            group_trees.append(HtbClass(f"host {host.address}", host.minor, group_class.minor, rate, ceil,
                                        default_priority, quantum_for(rate), burst_for(ceil), leaf=True,
                                        group=name, role="host"))
    others = inner_class("others", OTHERS_MINOR, link_bps - guaranteed_to_groups, link_bps, "others")
    shared = scaled_leaves(policy, numbering, direction, link_bps, others, numbering.tc_minor)
    return InterfaceTree(interface, direction, link_bps, default_minor, (link, control, others, *shared,
                                                                        *group_trees))


def build_trees(policy: Policy, numbering: Numbering, hosts: HostSlots | None = None) -> tuple[InterfaceTree, ...]:
    """Upload: one tree per WAN link at its own rate and one per tunnel at its share of its link,
    the same classes in each; download: one per LAN port at the rate of all links together."""
    interfaces = policy.interfaces
    links = {link.name: link for link in policy.wan_links()}
    trees = [build_tree(policy, numbering, link.interface, "upload", link.upload_bps, hosts)
             for link in links.values()]
    # A tunnel's inner packets, where their classes are still visible, at its share of its link.
    trees.extend(build_tree(policy, numbering, tunnel.interface, "upload",
                            int(links[tunnel.over].upload_bps * tunnel.share), hosts) for tunnel in policy.tunnels)
    trees.extend(build_tree(policy, numbering, lan, "download", interfaces.download_bps, hosts)
                 for lan in interfaces.lan)
    return tuple(trees)
