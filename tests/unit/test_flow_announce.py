"""A flow the classifier decides for an app a block rule may apply to is announced to conntrackd
(apply/conntrack_events.py): which apps count, the ctnetlink message, and when the handler sends it."""

from __future__ import annotations

import ipaddress
import socket
import struct

from gatewayd.apply.conntrack_events import NLA_F_NESTED, NLM_F_ACK, NLM_F_REQUEST, touch_request
from gatewayd.compile import marks
from tests.unit.test_classify_engine import client_hello, tcp
from tests.unit.test_qos_plan import BASE, plan_of
from tests.unit.test_verdicts_learning import QueuedPacket, handler

CLIENT, SERVER = "192.0.2.20", "198.51.100.30"


def attributes(data: bytes) -> dict[int, bytes]:
    """Netlink attributes by type (nested flag dropped)."""
    found, offset = {}, 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        found[kind & ~NLA_F_NESTED] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return found


def test_the_update_names_the_entry_by_its_original_tuple_and_changes_nothing() -> None:
    src, dst = ipaddress.ip_address(CLIENT).packed, ipaddress.ip_address(SERVER).packed
    message = touch_request(7, src, dst, socket.IPPROTO_UDP, 40000, 443)
    length, kind, flags, sequence, _ = struct.unpack_from("=LHHLL", message)
    assert (length, kind, sequence) == (len(message), 0x100, 7)  # ctnetlink subsystem, IPCTNL_MSG_CT_NEW
    assert flags == NLM_F_REQUEST | NLM_F_ACK  # no NLM_F_CREATE: an entry that ended is not made again
    assert message[16] == socket.AF_INET
    top = attributes(message[20:])
    assert list(top) == [1]  # CTA_TUPLE_ORIG only: no mark, status or timeout is written
    tuple_parts = attributes(top[1])
    assert attributes(tuple_parts[1]) == {1: src, 2: dst}
    assert attributes(tuple_parts[2]) == {1: b"\x11", 2: struct.pack("!H", 40000), 3: struct.pack("!H", 443)}
    v6 = touch_request(8, ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("2001:db8::2").packed,
                       socket.IPPROTO_TCP, 1, 2)
    assert v6[16] == socket.AF_INET6 and set(attributes(attributes(attributes(v6[20:])[1])[1])) == {3, 4}


def test_the_apps_announced_are_those_a_block_rule_may_apply_to() -> None:
    none_blocked = plan_of()
    assert none_blocked.ruleset.blockable_apps == frozenset()
    some = plan_of(BASE + "  - { name: no-youku, groups: [staff], apps: [youku], action: block }\n"
                   "  - { name: wechat-bulk, apps: [wechat], class: bulk }\n")
    assert some.ruleset.blockable_apps == frozenset({some.numbering.apps.numbers["youku"]})
    by_group = plan_of(BASE + "  - { name: finance-off, groups: [finance], action: block }\n")
    assert by_group.ruleset.blockable_apps is None  # names no app: any app may be blocked
    by_default = plan_of(BASE + "default: { action: block }\n")
    assert by_default.ruleset.blockable_apps is None
    tcp_only = plan_of(BASE + "classifier: { tcp_only: [youku] }\n")
    assert tcp_only.ruleset.blockable_apps == frozenset({tcp_only.numbering.apps.numbers["youku"]})


class RecordingAnnouncer:
    def __init__(self, packet: QueuedPacket) -> None:
        self.packet = packet
        self.calls: list[tuple[str, str, int, int, int, bool]] = []

    def announce(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bool:
        self.calls.append((str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst)), proto, sport, dport,
                           self.packet.accepted))
        return True


def decide_youku(blockable: frozenset[int] | None, mark: int = marks.QUEUE_REQUEST) -> RecordingAnnouncer:
    verdicts, *_ = handler()
    hello = QueuedPacket(tcp(CLIENT, SERVER, 40000, 443, "PA", 1001, client_hello("www.youku.com")), mark)
    announcer = RecordingAnnouncer(hello)
    verdicts.announcer = announcer
    verdicts.blockable_apps = blockable
    verdicts(hello)
    assert marks.app_number_of(hello.mark) == verdicts.numbering.apps.numbers["youku"]  # decided by this packet
    later = QueuedPacket(tcp(CLIENT, SERVER, 40000, 443, "PA", 5001, b"more"), mark)
    verdicts(later)  # a later packet of the decided flow: announced once per flow, not per packet
    return announcer


def test_a_flow_decided_for_a_blockable_app_is_announced_once_after_its_verdict() -> None:
    youku = handler()[0].numbering.apps.numbers["youku"]
    assert decide_youku(frozenset({youku})).calls == [(CLIENT, SERVER, 6, 40000, 443, True)]
    assert decide_youku(None).calls == [(CLIENT, SERVER, 6, 40000, 443, True)]
    assert decide_youku(frozenset({youku + 1})).calls == []  # no block rule can touch it: its packets pass


def test_a_reply_direction_packet_names_the_entry_by_the_clients_direction() -> None:
    verdicts, *_ = handler()
    reply = QueuedPacket(tcp(SERVER, CLIENT, 443, 40000, "PA", 9001, b"x"), marks.QUEUE_REQUEST | marks.FROM_SERVER)
    announcer = RecordingAnnouncer(reply)
    verdicts.announcer = announcer
    verdicts._announce(reply.payload, from_client=False)
    assert announcer.calls == [(CLIENT, SERVER, 6, 40000, 443, False)]
