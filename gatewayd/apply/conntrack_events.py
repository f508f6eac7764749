"""Make the kernel announce a conntrack entry now: an empty ctnetlink update of its tuple.

Why: the kernel keeps a conntrack's events (a ct mark change among them) in a per-entry cache
and delivers them when a packet of the entry is confirmed at postrouting/input. A flow the
classifier decides on a packet the policy then blocks never confirms another packet: the
deciding packet and every later one are dropped in forward, so conntrackd never hears the
flow's new mark, and an HA backup keeps the old, undecided one (kernels 5.x-6.18 alike).

An update message (IPCTNL_MSG_CT_NEW, no NLM_F_CREATE) that changes nothing still makes
ctnetlink report the entry to every event listener at once, with its current mark
(ctnetlink_new_conntrack -> nf_conntrack_eventmask_report). One message and its ack per call,
built with `struct` on one NETLINK_NETFILTER socket (pyroute2's NFCTSocket would cost ~20 MiB
to import for this one request).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

from gatewayd.apply.nfqueue_config import (
    NETLINK_NETFILTER,
    NFGEN_HEADER,
    NFNETLINK_V0,
    NLM_F_ACK,
    NLM_F_REQUEST,
    ack_errno,
)
from gatewayd.apply.tc_netlink import HEADER, encode_attribute

NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW = 0
NLA_F_NESTED = 0x8000
CTA_TUPLE_ORIG = 1
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
PORT_PROTOCOLS = frozenset({socket.IPPROTO_TCP, socket.IPPROTO_UDP})
ACK_TIMEOUT_SECONDS = 0.2  # the kernel answers while handling the send: the ack is there at once
RECEIVE_BYTES = 4096


class ConntrackEventError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def touch_request(sequence: int, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bytes:
    """The update message for the entry whose original direction is src:sport -> dst:dport."""
    attribute = encode_attribute
    if len(src) == 4:
        family, addresses = socket.AF_INET, attribute(CTA_IP_V4_SRC, src) + attribute(CTA_IP_V4_DST, dst)
    else:
        family, addresses = socket.AF_INET6, attribute(CTA_IP_V6_SRC, src) + attribute(CTA_IP_V6_DST, dst)
    ports = (attribute(CTA_PROTO_NUM, bytes([proto])) + attribute(CTA_PROTO_SRC_PORT, struct.pack("!H", sport))
             + attribute(CTA_PROTO_DST_PORT, struct.pack("!H", dport)))
    original = attribute(CTA_TUPLE_ORIG | NLA_F_NESTED, attribute(CTA_TUPLE_IP | NLA_F_NESTED, addresses)
                         + attribute(CTA_TUPLE_PROTO | NLA_F_NESTED, ports))
    body = NFGEN_HEADER.pack(family, NFNETLINK_V0, 0) + original
    message_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
    return HEADER.pack(HEADER.size + len(body), message_type, NLM_F_REQUEST | NLM_F_ACK, sequence, 0) + body


class ConntrackAnnouncer:
    """Owns one ctnetlink socket, opened on first use."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._sequence = 0

    def announce(self, src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> bool:
        """Have the kernel report the entry to its listeners (conntrackd). False: no such entry
        (it ended, or NAT changed its tuple). ConntrackEventError for anything else; OSError when
        the socket cannot be opened."""
        if proto not in PORT_PROTOCOLS:
            return False
        sock = self._open()
        self._sequence = (self._sequence + 1) & 0xFFFFFFFF
        sock.send(touch_request(self._sequence, src, dst, proto, sport, dport))
        code = None
        while code is None:  # skips a late answer to an earlier request that timed out
            code = ack_errno(sock.recv(RECEIVE_BYTES), self._sequence)
        if code == 0:
            return True
        if code == errno.ENOENT:
            return False
        raise ConntrackEventError(f"ctnetlink update of {describe(src, dst, proto, sport, dport)}: "
                                  f"{errno.errorcode.get(code, code)}", code)

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.settimeout(ACK_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def describe(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> str:
    return f"{proto} {ipaddress.ip_address(src)}:{sport} -> {ipaddress.ip_address(dst)}:{dport}"
