"""The NFQUEUE fail-open configuration message and the count of packets that never reached us."""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from gatewayd.apply.nfqueue_config import NLMSG_ERROR, ack_errno, fail_open_message
from gatewayd.daemon.verdicts import VerdictHandler
from gatewayd.metrics.daemon_state import DaemonMetrics


def test_the_message_sets_only_the_fail_open_flag_of_our_queue() -> None:
    message = fail_open_message(queue_num=7, enabled=True, sequence=42)
    length, kind, flags, sequence, port = struct.unpack_from("=IHHII", message)
    assert length == len(message) == 16 + 4 + 8 + 8
    assert kind == (3 << 8) | 2  # NFNL_SUBSYS_QUEUE, NFQNL_MSG_CONFIG
    assert flags == 0x1 | 0x4 and sequence == 42 and port == 0  # request, ack; to the kernel
    family, version, queue = struct.unpack_from("=BB", message, 16) + struct.unpack_from("!H", message, 18)
    assert (family, version, queue) == (0, 0, 7)
    mask = struct.unpack_from("=HH", message, 20) + struct.unpack_from("!I", message, 24)
    flags_attr = struct.unpack_from("=HH", message, 28) + struct.unpack_from("!I", message, 32)
    assert mask == (8, 4, 1) and flags_attr == (8, 5, 1)  # NFQA_CFG_MASK, NFQA_CFG_FLAGS = FAIL_OPEN
    cleared = fail_open_message(queue_num=7, enabled=False, sequence=43)
    assert struct.unpack_from("!I", cleared, 32) == (0,) and struct.unpack_from("!I", cleared, 24) == (1,)


def answer(sequence: int, error: int) -> bytes:
    return struct.pack("=IHHII", 36, NLMSG_ERROR, 0, sequence, 0) + struct.pack("=i", -error) + b"\0" * 16


def test_the_kernels_answer_is_found_by_its_sequence_number() -> None:
    assert ack_errno(answer(42, 0), 42) == 0
    assert ack_errno(answer(42, errno.EPERM), 42) == errno.EPERM
    assert ack_errno(answer(41, 0), 42) is None  # somebody else's
    packet_message = struct.pack("=IHHII", 20, (3 << 8) | 0, 0, 0, 0) + b"\0" * 4
    assert ack_errno(packet_message, 42) is None
    assert ack_errno(b"\x01\x00", 42) is None  # too short to be anything


@dataclass
class Outcome:
    learned: list[Any] = field(default_factory=list)
    flow_decision: None = None
    decision: None = None


class QuietClassifier:
    def on_packet(self, _payload: bytes, _now: float, _from_client: bool) -> Outcome:
        return Outcome()


@dataclass
class QueuedPacket:
    id: int
    accepted: bool = False

    def get_mark(self) -> int:
        return 0

    def get_payload(self) -> bytes:
        return b""

    def accept(self) -> None:
        self.accepted = True


def ids_through_handler(ids: list[int]) -> float:
    """How many packets the handler counts as unread after seeing these ids; every one is accepted."""
    metrics = DaemonMetrics(CollectorRegistry())
    handler = VerdictHandler(QuietClassifier(), None, None, metrics)  # type: ignore[arg-type]
    packets = [QueuedPacket(number) for number in ids]
    for packet in packets:
        handler(packet)
    assert all(packet.accepted for packet in packets)
    unread: float = metrics.queue_unread._value.get()
    return unread


def test_gaps_in_the_queues_packet_ids_are_counted_as_unread() -> None:
    assert ids_through_handler([1, 2, 3, 4]) == 0
    assert ids_through_handler([1, 2, 3, 7, 8, 10]) == 3 + 1
    assert ids_through_handler([0xFFFFFFFD, 0xFFFFFFFF, 1]) == 1 + 1  # u32 ids wrap: 0 came between
    assert ids_through_handler([5, 6, 1, 2]) == 0  # an id going back is a new binding, not a loss


def test_ids_numbered_after_the_last_packet_are_counted_once_the_kernel_holds_none() -> None:
    metrics = DaemonMetrics(CollectorRegistry())
    handler = VerdictHandler(QuietClassifier(), None, None, metrics)  # type: ignore[arg-type]
    for number in (1, 2, 3):
        handler(QueuedPacket(number))
    # The socket filled up: ids 4..9 were passed by fail-open, and no packet came after them.
    handler.account_undelivered(9)
    assert metrics.queue_unread._value.get() == 6
    handler.account_undelivered(9)  # the same lull seen again counts nothing more
    handler(QueuedPacket(10))  # the next packet continues from the kernel's sequence: no gap
    assert metrics.queue_unread._value.get() == 6


def test_a_queue_that_never_delivered_counts_every_numbered_id() -> None:
    metrics = DaemonMetrics(CollectorRegistry())
    handler = VerdictHandler(QuietClassifier(), None, None, metrics)  # type: ignore[arg-type]
    handler.account_undelivered(5)
    assert metrics.queue_unread._value.get() == 5
