"""Where gatewayd keeps its per-flow state: the one place that allocates mark bits.

The conntrack mark (ct mark) of a flow carries everything the kernel needs to
handle the flow's later packets without Python:

    bit 31 . 29 28 ....... 20 19 ..... 14  13     12 .... 8  7 ...... 0
    +----------+--------------+-----------+-------+----------+----------+
    | link (3) | app id (9)   | group (6) | block | class(5) |  others  |
    +----------+--------------+-----------+-------+----------+----------+

  link     0 = no WAN link chosen (one-link policies, flows from before start),
           1..7 = the policy's `links` in file order: the line the connection
           went out on for its whole life. Restored into the packet mark on
           every office packet, where `ip rule fwmark` picks the link's routing
           table (compile/links.py); failover deletes the conntrack entries
           with the failed link's value, and no others.
  app id   0 = not decided yet (the flow may still be queued to the classifier),
           1 = "unknown" (final: the classifier gave up), 2.. = catalog apps.
           (9 bits: the catalog has ~110 apps; the link took the top 3 bits.)
  group    0 = not looked up yet, 1 = in no group, 2.. = policy groups in order.
           Only for accounting: rules match on addresses, so a host may sit in
           several groups.
  block    the last policy evaluation blocked the flow; reply packets are dropped.
  class    0 = not evaluated yet, 1.. = QoS class index (tc minor = 0x10 + index).
  others   bits 0-7 are never read or written by gatewayd, so policy routing,
           multi-WAN or other tools that keep their marks in the low byte
           coexist with it. Every write is "ct mark & ~FIELD | value".

The packet mark (meta mark) is used on the way to and from NFQUEUE only, in the
same bit positions, and gatewayd clears its bits before the packet leaves its
chains:
    QUEUE_REQUEST (bit 13) set by the kernel rules: "send this packet to the
                   classifier" (the iptables-nft NFQUEUE rule matches on it).
    FROM_SERVER   (bit 12) set with it on reply-direction packets, so the
                   classifier knows who the client is without seeing the SYN
                   (which, carrying no payload, is not queued).
    RESOLVER_ANSWER (bit 11) with it on DNS answers from a resolver the policy
                   names (dns.resolvers): they may teach addresses, if they
                   match a query the classifier saw on their flow.
    ROUTER_ANSWER (bit 10) with it on DNS answers the router's own resolver
                   sends (output hook): made on this box, they may teach.
                   A queued answer with neither bit never teaches.
    app id bits    set by the classifier in its verdict; a later chain copies
                   them into the ct mark.
    link bits      copied from the ct mark in prerouting, for the routing
                   decision (ip rule fwmark VALUE/LINK_MASK); cleared in the
                   enforce chain with the rest.

The conntrack labels (ct label, 128 bits) carry one more thing: bits 64-127 tag
the rules epoch a decided flow was last evaluated in (compile/decision_epoch.py),
one bit per epoch, cycling; bits 0-63 are left to other tools.
"""

from __future__ import annotations

from dataclasses import dataclass

LINK_SHIFT = 29
LINK_MASK = 0xE000_0000
APP_SHIFT = 20
APP_MASK = 0x1FF0_0000
GROUP_SHIFT = 14
GROUP_MASK = 0x000F_C000
BLOCK_BIT = 0x0000_2000
CLASS_SHIFT = 8
CLASS_MASK = 0x0000_1F00
GATEWAYD_MASK = LINK_MASK | APP_MASK | GROUP_MASK | BLOCK_BIT | CLASS_MASK  # 0xFFFFFF00
OTHERS_MASK = 0xFFFF_FFFF & ~GATEWAYD_MASK

QUEUE_REQUEST = 0x0000_2000  # meta mark only
FROM_SERVER = 0x0000_1000  # meta mark only, with QUEUE_REQUEST
RESOLVER_ANSWER = 0x0000_0800  # meta mark only, with QUEUE_REQUEST | FROM_SERVER
ROUTER_ANSWER = 0x0000_0400  # meta mark only, with QUEUE_REQUEST | FROM_SERVER

APP_UNDECIDED = 0
APP_UNKNOWN = 1
FIRST_APP_NUMBER = 2
MAX_APP_NUMBER = APP_MASK >> APP_SHIFT  # 511

NO_LINK = 0
FIRST_LINK_NUMBER = 1
MAX_LINK_NUMBER = LINK_MASK >> LINK_SHIFT  # 7

GROUP_UNSET = 0
GROUP_NONE = 1
FIRST_GROUP_NUMBER = 2
MAX_GROUP_NUMBER = GROUP_MASK >> GROUP_SHIFT  # 63

MAX_CLASS_INDEX = CLASS_MASK >> CLASS_SHIFT  # 31

FIRST_EPOCH_LABEL = 64  # ct label bits FIRST_EPOCH_LABEL .. +EPOCH_LABELS-1: rules epochs
EPOCH_LABELS = 64
EPOCH_LABEL_MASK = ((1 << EPOCH_LABELS) - 1) << FIRST_EPOCH_LABEL  # as a 128-bit ct label value
TC_MINOR_BASE = 0x10


def app_bits(app_number: int) -> int:
    if not 0 <= app_number <= MAX_APP_NUMBER:
        raise ValueError(f"app number {app_number} outside 0..{MAX_APP_NUMBER}")
    return app_number << APP_SHIFT


def app_number_of(mark: int) -> int:
    return (mark & APP_MASK) >> APP_SHIFT


def link_bits(link_number: int) -> int:
    if not 0 <= link_number <= MAX_LINK_NUMBER:
        raise ValueError(f"link number {link_number} outside 0..{MAX_LINK_NUMBER}")
    return link_number << LINK_SHIFT


def link_number_of(mark: int) -> int:
    return (mark & LINK_MASK) >> LINK_SHIFT


def group_bits(group_number: int) -> int:
    if not 0 <= group_number <= MAX_GROUP_NUMBER:
        raise ValueError(f"group number {group_number} outside 0..{MAX_GROUP_NUMBER}")
    return group_number << GROUP_SHIFT


def group_number_of(mark: int) -> int:
    return (mark & GROUP_MASK) >> GROUP_SHIFT


def class_bits(class_index: int) -> int:
    if not 0 <= class_index <= MAX_CLASS_INDEX:
        raise ValueError(f"class index {class_index} outside 0..{MAX_CLASS_INDEX}")
    return class_index << CLASS_SHIFT


def class_index_of(mark: int) -> int:
    return (mark & CLASS_MASK) >> CLASS_SHIFT


def verdict_packet_mark(current_mark: int, app_number: int) -> int:
    """The packet mark the classifier returns with its verdict: other tools' bits kept."""
    return (current_mark & OTHERS_MASK) | app_bits(app_number)


@dataclass(frozen=True)
class NumberAllocation:
    """Stable numbers for names (apps, groups) across reloads.

    Live flows keep their numbers in the ct mark, so a reload must not give an
    existing app another number: names keep what they had; new names take the
    lowest free number.
    """

    numbers: dict[str, int]

    @staticmethod
    def allocate(names: list[str], first: int, last: int,
                 previous: NumberAllocation | None = None) -> NumberAllocation:
        kept = {n: num for n, num in (previous.numbers.items() if previous else ()) if n in set(names)}
        used = set(kept.values())
        free = (num for num in range(first, last + 1) if num not in used)
        numbers = dict(kept)
        for name in names:
            if name not in numbers:
                try:
                    numbers[name] = next(free)
                except StopIteration:
                    raise ValueError(f"more than {last - first + 1} names to number") from None
        return NumberAllocation(numbers)

    def name_of(self, number: int) -> str | None:
        for name, num in self.numbers.items():
            if num == number:
                return name
        return None
