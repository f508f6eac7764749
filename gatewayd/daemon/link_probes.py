"""One probe round over one WAN link: ICMP echo, TCP connect, DNS query, all at once.

Every socket carries the link's routing mark (SO_MARK: `ip rule fwmark` picks the
link's table) and is bound to the link's interface (SO_BINDTODEVICE), so a probe
can only travel over the link it judges, whatever the main table says. Needs
CAP_NET_ADMIN (SO_MARK) and CAP_NET_RAW (ICMP), which the unit keeps.
Runs in the link's prober thread (daemon/link_health.py), never on the verdict path.
"""

from __future__ import annotations

import errno
import os
import selectors
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from gatewayd.policy.model import IPAddress, LinkProbe

SO_MARK = getattr(socket, "SO_MARK", 36)
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY = 8, 0
ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY = 128, 129
DNS_PORT = 53
# A TCP connect that the far end refuses still crossed the link and came back.
TCP_ANSWERS = (0, errno.ECONNREFUSED)


@dataclass(frozen=True)
class RoundResult:
    answered: bool  # at least one target answered within the timeout
    rtt_seconds: float | None  # the fastest answer


@dataclass
class _Pending:
    sock: socket.socket
    answered: Callable[[socket.socket], bool]  # called when readable/writable: did the target answer?


def _socket(family: int, kind: int, proto: int, mark: int, interface: str) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_MARK, mark)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
    except OSError:
        sock.close()
        raise
    return sock


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return int(~total & 0xFFFF)


def _icmp(target: IPAddress, ident: int, mark: int, interface: str) -> _Pending:
    v6 = target.version == 6
    sock = _socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                   socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP, mark, interface)
    request_type, reply_type = (ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY) if v6 else (ICMP_ECHO_REQUEST, ICMP_ECHO_REPLY)
    payload = b"gatewayd link probe"
    header = struct.pack("!BBHHH", request_type, 0, 0, ident, 1)
    # The kernel computes the ICMPv6 checksum (it covers a pseudo-header we do not build).
    checksum = 0 if v6 else _checksum(header + payload)
    sock.sendto(struct.pack("!BBHHH", request_type, 0, checksum, ident, 1) + payload, (str(target), 0))

    def answered(s: socket.socket) -> bool:
        while True:
            try:
                data, source = s.recvfrom(2048)
            except BlockingIOError:
                return False
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]  # a raw IPv4 socket hands over the IP header
            if (len(icmp) >= 8 and icmp[0] == reply_type and struct.unpack("!H", icmp[4:6])[0] == ident
                    and source[0] == str(target)):
                return True

    return _Pending(sock, answered)


def _tcp(target: IPAddress, port: int, mark: int, interface: str) -> _Pending:
    sock = _socket(socket.AF_INET6 if target.version == 6 else socket.AF_INET, socket.SOCK_STREAM, 0, mark, interface)
    code = sock.connect_ex((str(target), port))
    if code not in (0, errno.EINPROGRESS):
        sock.close()
        raise OSError(code, os.strerror(code))
    return _Pending(sock, lambda s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) in TCP_ANSWERS)


def _dns(target: IPAddress, ident: int, mark: int, interface: str) -> _Pending:
    sock = _socket(socket.AF_INET6 if target.version == 6 else socket.AF_INET, socket.SOCK_DGRAM, 0, mark, interface)
    # Query: the root's NS records. Any answer, even a refusal, proves the path works.
    query = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + b"\x00" + struct.pack("!HH", 2, 1)
    sock.sendto(query, (str(target), DNS_PORT))

    def answered(s: socket.socket) -> bool:
        try:
            data = s.recv(4096)
        except OSError:  # e.g. ICMP port unreachable: the link works but this is no DNS server
            return False
        return len(data) >= 2 and struct.unpack("!H", data[:2])[0] == ident

    return _Pending(sock, answered)


def probe_round(probe: LinkProbe, mark: int, interface: str) -> RoundResult:
    """Probe every target at once; wait at most the probe's timeout."""
    ident = int.from_bytes(os.urandom(2), "big")
    started = time.monotonic()
    deadline = started + probe.timeout_ms / 1000
    pending: list[_Pending] = []
    builders: list[Callable[[], _Pending]] = [
        *(lambda t=t: _icmp(t, ident, mark, interface) for t in probe.icmp),
        *(lambda t=t, p=p: _tcp(t, p, mark, interface) for t, p in probe.tcp),
        *(lambda t=t: _dns(t, ident, mark, interface) for t in probe.dns),
    ]
    for build in builders:
        try:
            pending.append(build())
        except OSError:
            continue  # e.g. no route over this link right now: that target does not answer
    opened = [item.sock for item in pending]
    with selectors.DefaultSelector() as selector:
        for item in pending:
            events = selectors.EVENT_WRITE if item.sock.type == socket.SOCK_STREAM else selectors.EVENT_READ
            selector.register(item.sock, events, item)
        try:
            while pending and (remaining := deadline - time.monotonic()) > 0:
                for key, _ in selector.select(remaining):
                    item = key.data
                    if item.answered(item.sock):
                        return RoundResult(True, time.monotonic() - started)
                    if item.sock.type == socket.SOCK_STREAM:  # connect failed: this target is done
                        selector.unregister(item.sock)
                        pending.remove(item)
        finally:
            for sock in opened:
                sock.close()
    return RoundResult(False, None)
