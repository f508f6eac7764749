"""Batched rtnetlink for HTB classes and leaf qdiscs: thousands of changes in a few sends.

pyroute2 costs about 1.5 ms of Python per tc request; per-host limits need
thousands of classes, so this module packs the few message kinds gatewayd
needs (the HTB root too: importing pyroute2 alone took 22 MiB of the
daemon's memory) with `struct`, sends them in chunks over one NETLINK_ROUTE socket and
matches every acknowledgement to its request (an error names the class).
It holds no state beyond its socket; the trees themselves live in apply/tc.py.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

NETLINK_ROUTE = 0
RTM_NEWQDISC, RTM_DELQDISC, RTM_NEWTCLASS, RTM_DELTCLASS = 36, 37, 40, 41
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCA_KIND, TCA_OPTIONS = 1, 2
TCA_HTB_PARMS, TCA_HTB_INIT, TCA_HTB_RATE64, TCA_HTB_CEIL64 = 1, 2, 6, 7
HTB_VERSION, HTB_RATE_TO_QUANTUM = 3, 10  # what tc sends for a new HTB root (struct tc_htb_glob)
TC_LINKLAYER_ETHERNET = 1
NS_PER_PSCHED_TICK = 64  # PSCHED_SHIFT = 6 in the kernel: HTB buffers are in 64 ns ticks
U32_MAX = 0xFFFF_FFFF
CHUNK_MESSAGES = 256  # per send: well under the socket buffers, few syscalls
RECEIVE_BUFFER_BYTES = 1 << 20
HEADER = struct.Struct("=LHHLL")
TCMSG = struct.Struct("=BBHiIII")
RATESPEC = struct.Struct("=BBHhHI")


class TcBatchError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class HtbParams:
    rate_bps: int
    ceil_bps: int
    burst_bytes: int
    cburst_bytes: int
    quantum_bytes: int
    priority: int


@dataclass(frozen=True)
class Request:
    """One encoded message and what it does, for error messages."""

    what: str
    message_type: int
    flags: int
    body: bytes


def encode_attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _ratespec(bytes_per_second: int) -> bytes:
    return RATESPEC.pack(0, TC_LINKLAYER_ETHERNET, 0, -1, 0, min(bytes_per_second, U32_MAX))


def _ticks(size_bytes: int, bytes_per_second: int) -> int:
    """Time to send `size_bytes` at the rate, in psched ticks, as tc computes HTB's buffer."""
    return min(U32_MAX, size_bytes * 1_000_000_000 // max(1, bytes_per_second) // NS_PER_PSCHED_TICK)


def htb_options(params: HtbParams) -> bytes:
    rate, ceil = params.rate_bps // 8, params.ceil_bps // 8
    parms = (_ratespec(rate) + _ratespec(ceil)
             + struct.pack("=IIIII", _ticks(params.burst_bytes, rate), _ticks(params.cburst_bytes, ceil),
                           params.quantum_bytes, 0, params.priority))
    attributes = encode_attribute(TCA_HTB_PARMS, parms)
    if rate >= U32_MAX:
        attributes += encode_attribute(TCA_HTB_RATE64, struct.pack("=Q", rate))
    if ceil >= U32_MAX:
        attributes += encode_attribute(TCA_HTB_CEIL64, struct.pack("=Q", ceil))
    return attributes


def class_request(verb: str, ifindex: int, handle: int, parent: int, params: HtbParams | None = None,
                  rate_estimator: bool = False) -> Request:
    """verb: add, change or delete; `rate_estimator` makes the kernel keep the class's current rate."""
    head = TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, handle, parent, 0)
    what = f"{verb} class {handle >> 16:x}:{handle & 0xFFFF:x}"
    if verb == "delete":
        return Request(what, RTM_DELTCLASS, 0, head)
    assert params is not None
    flags = NLM_F_CREATE | NLM_F_EXCL if verb == "add" else 0
    body = head + encode_attribute(TCA_KIND, b"htb\0") + encode_attribute(TCA_OPTIONS, htb_options(params))
    if rate_estimator:
        body += estimator()
    return Request(what, RTM_NEWTCLASS, flags, body)


def qdisc_request(ifindex: int, handle: int, parent: int, kind: str, fifo_limit: int | None = None) -> Request:
    """Add a leaf qdisc; `fifo_limit` only for FIFOs (bytes for bfifo, packets for pfifo)."""
    body = (TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, handle, parent, 0)
            + encode_attribute(TCA_KIND, kind.encode() + b"\0"))
    if fifo_limit is not None:
        body += encode_attribute(TCA_OPTIONS, struct.pack("=I", fifo_limit))
    return Request(f"add {kind} under {parent >> 16:x}:{parent & 0xFFFF:x}", RTM_NEWQDISC,
                   NLM_F_CREATE | NLM_F_EXCL, body)


def root_htb_request(ifindex: int, handle: int, default_minor: int) -> Request:
    """Add an HTB root qdisc whose unclassified packets go to `default_minor`."""
    glob = struct.pack("=IIIII", HTB_VERSION, HTB_RATE_TO_QUANTUM, default_minor, 0, 0)
    body = (TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, handle, TC_H_ROOT, 0) + encode_attribute(TCA_KIND, b"htb\0")
            + encode_attribute(TCA_OPTIONS, encode_attribute(TCA_HTB_INIT, glob)))
    return Request(f"add htb root {handle >> 16:x}:", RTM_NEWQDISC, NLM_F_CREATE | NLM_F_EXCL, body)


def delete_root_request(ifindex: int) -> Request:
    """Delete whatever root qdisc the device has (ENOENT if it has only the default one)."""
    return Request("delete root qdisc", RTM_DELQDISC, 0,
                   TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, 0, TC_H_ROOT, 0))


class TcBatch:
    """One rtnetlink socket in the current network namespace."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        self._socket.bind((0, 0))
        self._sequence = 0

    def close(self) -> None:
        self._socket.close()

    def run(self, requests: Iterable[Request]) -> None:
        """Send every request; raise at the first the kernel refused (earlier ones stay applied)."""
        pending = list(requests)
        for start in range(0, len(pending), CHUNK_MESSAGES):
            self._run_chunk(pending[start:start + CHUNK_MESSAGES])

    def _run_chunk(self, chunk: list[Request]) -> None:
        by_sequence: dict[int, Request] = {}
        frames = []
        for request in chunk:
            by_sequence[self._next_sequence()] = request
            flags = NLM_F_REQUEST | NLM_F_ACK | request.flags
            frames.append(HEADER.pack(HEADER.size + len(request.body), request.message_type, flags,
                                      self._sequence, 0) + request.body)
        self._socket.sendall(b"".join(frames))
        failure: TcBatchError | None = None
        while by_sequence:
            data = self._socket.recv(RECEIVE_BUFFER_BYTES)
            for sequence, code in acknowledgements(data):
                acknowledged = by_sequence.pop(sequence) if sequence in by_sequence else None
                if acknowledged is not None and code != 0 and failure is None:
                    failure = TcBatchError(f"{acknowledged.what}: {os.strerror(-code)}", -code)
        if failure is not None:
            raise failure


    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) & U32_MAX
        return self._sequence

    def qdiscs(self, ifindex: int) -> list[TcObject]:
        return self._dump(RTM_GETQDISC, ifindex)

    def classes(self, ifindex: int) -> list[TcObject]:
        return self._dump(RTM_GETTCLASS, ifindex)

    def _dump(self, message_type: int, ifindex: int) -> list[TcObject]:
        """A dump of one device's qdiscs or classes, parsed with `struct` (thousands per second)."""
        body = TCMSG.pack(socket.AF_UNSPEC, 0, 0, ifindex, 0, 0, 0)
        found: list[TcObject] = []
        for data, offset, length in dump_messages(self._socket, self._next_sequence(), message_type, body):
            owner, item = _tc_object(data, offset, length)
            if owner == ifindex:
                found.append(item)
        return found


def dump_messages(sock: socket.socket, sequence: int, message_type: int, body: bytes,
                  receive_bytes: int = RECEIVE_BUFFER_BYTES) -> Iterator[tuple[bytes, int, int]]:
    """Send a dump request; (buffer, offset, length) of every message of the answer, until NLMSG_DONE."""
    sock.sendall(HEADER.pack(HEADER.size + len(body), message_type, NLM_F_REQUEST | NLM_F_DUMP, sequence, 0) + body)
    while True:
        data = sock.recv(receive_bytes)
        offset = 0
        while offset + HEADER.size <= len(data):
            length, kind, _flags, seq, _pid = HEADER.unpack_from(data, offset)
            if length < HEADER.size:
                break
            if seq == sequence:
                if kind == NLMSG_DONE:
                    return
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + HEADER.size)
                    raise TcBatchError(f"dump: {os.strerror(-code)}", -code)
                yield data, offset, length
            offset += (length + 3) & ~3


def acknowledgements(data: bytes) -> Iterator[tuple[int, int]]:
    offset = 0
    while offset + HEADER.size <= len(data):
        length, message_type, _flags, sequence, _pid = HEADER.unpack_from(data, offset)
        if length < HEADER.size:
            return
        if message_type == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, offset + HEADER.size)
            yield sequence, code
        elif message_type == NLMSG_DONE:
            yield sequence, 0
        offset += (length + 3) & ~3



RTM_GETQDISC, RTM_GETTCLASS = 38, 42
NLM_F_DUMP = 0x300
TCA_STATS2, TCA_RATE = 7, 5
TCA_STATS_BASIC, TCA_STATS_RATE_EST, TCA_STATS_QUEUE = 1, 2, 3
TC_H_ROOT = 0xFFFF_FFFF


@dataclass(frozen=True)
class TcObject:
    """A qdisc or class as a dump reports it: identity, kind and statistics."""

    handle: int
    parent: int
    kind: str
    bytes: int = 0
    packets: int = 0
    drops: int = 0
    overlimits: int = 0
    backlog_bytes: int = 0
    rate_bytes_per_second: int = 0


def attributes(data: bytes, offset: int, end: int) -> Iterator[tuple[int, bytes]]:
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind & 0x3FFF, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def _tc_object(data: bytes, offset: int, length: int) -> tuple[int, TcObject]:
    _family, _p1, _p2, ifindex, handle, parent, _info = TCMSG.unpack_from(data, offset + HEADER.size)
    kind = ""
    stats: dict[str, int] = {}
    start = offset + HEADER.size + TCMSG.size
    for attribute, payload in attributes(data, start, offset + length):
        if attribute == TCA_KIND:
            kind = payload.rstrip(b"\0").decode()
        elif attribute == TCA_STATS2:
            for nested, value in attributes(payload, 0, len(payload)):
                if nested == TCA_STATS_BASIC and len(value) >= 12:
                    stats["bytes"], stats["packets"] = struct.unpack_from("=QI", value)
                elif nested == TCA_STATS_QUEUE and len(value) >= 20:
                    _qlen, stats["backlog_bytes"], stats["drops"], _requeues, stats["overlimits"] = \
                        struct.unpack_from("=IIIII", value)
                elif nested == TCA_STATS_RATE_EST and len(value) >= 8:
                    stats["rate_bytes_per_second"] = struct.unpack_from("=I", value)[0]
    return ifindex, TcObject(handle, parent, kind, **stats)


def estimator() -> bytes:
    """TCA_RATE: HTB keeps a rate estimate (1 s samples, ~8 s average) that metrics export."""
    return encode_attribute(TCA_RATE, struct.pack("=bB", 0, 3))
