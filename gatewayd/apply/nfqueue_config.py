"""The NFQUEUE's fail-open flag, which the NetfilterQueue binding cannot set.

Without NFQA_CFG_F_FAIL_OPEN the kernel drops a packet it cannot queue (the
queue at its max length, or our socket's receive buffer full): once the
daemon falls behind, the first packets of new flows are lost. With it
(Linux >= 3.6) such a packet passes as if accepted, without a verdict: what
`fail_mode: open` promises. NetfilterQueue 1.1 binds without flags and
exposes no handle for libnetfilter_queue's nfq_set_queue_flags, so this
sends the NFQNL_MSG_CONFIG message itself, on the queue's own netlink socket
(the kernel takes a queue's configuration only from the socket bound to it).

The kernel's answer (an NLMSG_ERROR with our sequence number, 0 for success)
lands in the same socket as queued packets, possibly behind some: the
socket is read once through NetfilterQueue's own `run_socket`, so packets
ahead of the answer get their verdicts as usual, and the answer is picked out
on the way (libnetfilter_queue ignores a message it does not know).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from typing import Protocol, cast

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_CONFIG = 2
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFNETLINK_V0 = 0
NFQA_CFG_MASK = 4
NFQA_CFG_FLAGS = 5
NFQA_CFG_F_FAIL_OPEN = 0x1

NLMSG_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NFGEN_HEADER = struct.Struct("=BBH")  # family, version, resource id (big-endian queue number)
NLA_U32_BE = struct.Struct("=HH")  # attribute length, type; then a big-endian u32


class QueueConfigError(RuntimeError):
    pass


class BoundQueue(Protocol):
    """The two things of a bound NetfilterQueue this needs."""

    def get_fd(self) -> int: ...

    def run_socket(self, s: socket.socket) -> None: ...


def fail_open_message(queue_num: int, enabled: bool, sequence: int) -> bytes:
    """NFQNL_MSG_CONFIG setting (or clearing) only the fail-open flag of `queue_num`, asking for an ack."""
    flag = NFQA_CFG_F_FAIL_OPEN if enabled else 0
    attributes = b"".join(NLA_U32_BE.pack(8, kind) + struct.pack("!I", value)
                          for kind, value in ((NFQA_CFG_MASK, NFQA_CFG_F_FAIL_OPEN), (NFQA_CFG_FLAGS, flag)))
    body = NFGEN_HEADER.pack(socket.AF_UNSPEC, NFNETLINK_V0, socket.htons(queue_num)) + attributes
    header = NLMSG_HEADER.pack(NLMSG_HEADER.size + len(body), (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_CONFIG,
                               NLM_F_REQUEST | NLM_F_ACK, sequence, 0)
    return header + body


def ack_errno(datagram: bytes, sequence: int) -> int | None:
    """The errno of the kernel's answer to `sequence` (0: done) if `datagram` holds it, else None."""
    offset = 0
    while offset + NLMSG_HEADER.size <= len(datagram):
        length, kind, _flags, seen_sequence, _port = NLMSG_HEADER.unpack_from(datagram, offset)
        if length < NLMSG_HEADER.size:
            return None
        if kind == NLMSG_ERROR and seen_sequence == sequence and offset + NLMSG_HEADER.size + 4 <= len(datagram):
            (error,) = struct.unpack_from("=i", datagram, offset + NLMSG_HEADER.size)
            return -int(error)
        offset += (length + 3) & ~3
    return None


class _AnswerWatch:
    """A socket stand-in for run_socket: passes every datagram on, notes our answer."""

    def __init__(self, sock: socket.socket, sequence: int) -> None:
        self._sock = sock
        self._sequence = sequence
        self.answer: int | None = None

    def recv(self, size: int) -> bytes:
        data = self._sock.recv(size)
        found = ack_errno(data, self._sequence)
        if found is not None:
            self.answer = found
        return data


def set_fail_open(queue: BoundQueue, queue_num: int, enabled: bool) -> None:
    """Set (or clear) the kernel's fail-open flag on a bound queue; QueueConfigError if refused."""
    sequence = int(time.monotonic_ns() & 0x7FFFFFFF) or 1
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER, fileno=os.dup(queue.get_fd()))
    try:
        sock.setblocking(False)  # shared with the queue's fd, which the loop reads non-blocking anyway
        try:
            sock.sendto(fail_open_message(queue_num, enabled, sequence), (0, 0))
        except OSError as exc:
            raise QueueConfigError(f"cannot send the queue configuration: {exc}") from exc
        # The kernel answers while handling the send, so the answer is in the socket now.
        watch = _AnswerWatch(sock, sequence)
        queue.run_socket(cast(socket.socket, watch))  # it only ever calls recv()
    finally:
        sock.close()
    if watch.answer is None:
        raise QueueConfigError("no answer from the kernel (the socket buffer overflowed?)")
    if watch.answer == errno.EOPNOTSUPP:
        raise QueueConfigError("this kernel has no NFQUEUE fail-open (needs Linux >= 3.6)")
    if watch.answer != 0:
        raise QueueConfigError(f"the kernel refused the queue configuration: {os.strerror(watch.answer)}")
