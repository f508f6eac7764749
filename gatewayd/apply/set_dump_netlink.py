"""Read the elements of one nf_tables set with a netlink dump of just that set.

The verdict loop watches small kernel sets on its tick (the hosts waiting for
their classes every 100 ms, daemon/host_classes.py; the guard's blocklist
every second, daemon/blocklist_watch.py). Through libnftables each read made
a context, filled its cache with the table and rendered JSON: 0.75 ms per
set, more with the guard's four sets, while queued packets waited. A
NFT_MSG_GETSETELEM dump of the one set costs a few tens of microseconds
(bench/loop_work.py prints both). Built with `struct`, like the other
hand-packed netlink of apply/ (set_elements_netlink.py, epoch_labels.py).

Only plain address sets are read here (no intervals, no concatenations): the
key is the address's 4 or 16 bytes.
"""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER, NFGEN_HEADER, NFNETLINK_V0
from gatewayd.apply.set_elements_netlink import (
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_BY_FAMILY,
    NFT_MSG_NEWSETELEM,
    NFTA_DATA_VALUE,
    NFTA_LIST_ELEM,
    NFTA_SET_ELEM_KEY,
    NFTA_SET_ELEM_LIST_ELEMENTS,
    NFTA_SET_ELEM_LIST_SET,
    NFTA_SET_ELEM_LIST_TABLE,
    NFTA_SET_ELEM_TIMEOUT,
    strz,
)
from gatewayd.apply.tc_netlink import HEADER, TcBatchError, attributes, dump_messages, encode_attribute

NFT_MSG_GETSETELEM = 13
NFTA_SET_ELEM_FLAGS, NFTA_SET_ELEM_EXPIRATION = 3, 5
NFT_SET_ELEM_INTERVAL_END = 0x1
# One answer datagram: the kernel fills a dump message up to a page or so per recv; a small
# buffer keeps each recv's allocation cheap (a set of 5,000 hosts takes a few more recvs).
RECEIVE_BYTES = 1 << 16
SOCKET_TIMEOUT_SECONDS = 1.0  # the kernel answers a dump at once: only a broken kernel waits
U64 = struct.Struct("!Q")


class SetMissing(LookupError):
    """The table or the set is not in the kernel (ENOENT): no element, not an error."""


@dataclass(frozen=True)
class SetElement:
    address: str
    timeout_ms: int | None  # the element's own timeout, when the set has timeouts
    expires_ms: int | None  # what is left of it


def get_elements_request(family: str, table: str, set_name: str) -> bytes:
    """The body of the dump request (after the netlink header): nfgenmsg, table and set."""
    return (NFGEN_HEADER.pack(NFPROTO_BY_FAMILY[family], NFNETLINK_V0, 0)
            + encode_attribute(NFTA_SET_ELEM_LIST_TABLE, strz(table))
            + encode_attribute(NFTA_SET_ELEM_LIST_SET, strz(set_name)))


def _address(key: bytes) -> str | None:
    for kind, payload in attributes(key, 0, len(key)):
        if kind == NFTA_DATA_VALUE:
            if len(payload) == 4:
                return socket.inet_ntop(socket.AF_INET, payload)
            if len(payload) == 16:
                return socket.inet_ntop(socket.AF_INET6, payload)
    return None


def _element(data: bytes) -> SetElement | None:
    address: str | None = None
    timeout_ms: int | None = None
    expires_ms: int | None = None
    for kind, payload in attributes(data, 0, len(data)):
        if kind == NFTA_SET_ELEM_KEY:
            address = _address(payload)
        elif kind == NFTA_SET_ELEM_TIMEOUT and len(payload) == 8:
            (timeout_ms,) = U64.unpack(payload)
        elif kind == NFTA_SET_ELEM_EXPIRATION and len(payload) == 8:
            (expires_ms,) = U64.unpack(payload)
        elif kind == NFTA_SET_ELEM_FLAGS and len(payload) == 4 and \
                struct.unpack("!I", payload)[0] & NFT_SET_ELEM_INTERVAL_END:
            return None  # an interval's end: not an element of its own
    return None if address is None else SetElement(address, timeout_ms, expires_ms)


def elements_of_message(data: bytes, offset: int, length: int) -> Iterator[SetElement]:
    """The elements one NFT_MSG_NEWSETELEM message of a dump carries."""
    _type = HEADER.unpack_from(data, offset)[1]
    if _type != (NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM):
        return
    start = offset + HEADER.size + NFGEN_HEADER.size
    for kind, payload in attributes(data, start, offset + length):
        if kind != NFTA_SET_ELEM_LIST_ELEMENTS:
            continue
        for item_kind, item in attributes(payload, 0, len(payload)):
            if item_kind == NFTA_LIST_ELEM:
                element = _element(item)
                if element is not None:
                    yield element


class SetReader:
    """A netlink socket that dumps sets' elements (one thread's: the loop's)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._sequence = 0

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.bind((0, 0))
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def elements(self, family: str, table: str, set_name: str) -> list[SetElement]:
        """The set's elements; SetMissing when the table or set is not there, OSError (or TcBatchError
        for another refusal) when the read failed."""
        self._sequence = self._sequence % 0x7FFF_FFFF + 1
        message_type = NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM
        sock = self._open()
        found: list[SetElement] = []
        try:
            for data, offset, length in dump_messages(sock, self._sequence, message_type,
                                                      get_elements_request(family, table, set_name),
                                                      receive_bytes=RECEIVE_BYTES):
                found.extend(elements_of_message(data, offset, length))
        except TcBatchError as exc:
            if exc.code == errno.ENOENT:
                raise SetMissing(f"{family} {table} {set_name}") from exc
            self.close()  # a half-read dump would be misread by the next one
            raise
        except OSError:
            self.close()
            raise
        return found
