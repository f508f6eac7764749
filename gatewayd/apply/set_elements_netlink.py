"""Replace elements of nf_tables sets and maps, whatever they hold now, in one transaction.

An nft `add element` keeps an element that is already there (with its old timeout),
and refuses the whole transaction (EEXIST) when the element there maps to other
data (a map's other chain); a `delete element` refuses it (ENOENT) when the element
is not there. NFT_MSG_DESTROYSETELEM (Linux >= 6.3) deletes an element if it is
there and is no error if not: a destroy and an add of the same keys in one
transaction leave exactly the new elements, with the new timeouts, whatever was
there, and a lookup never misses a key that was there before (the transaction is
atomic).

nft 1.0.6 (Debian 12) has no `destroy` command, so the batch is built here with
`struct`, like the other hand-packed netlink of apply/ (tc_netlink.py,
epoch_labels.py). A kernel without the message (EINVAL for the destroy, every add
accepted) raises DestroyUnsupported: the callers fall back to nft, logged once
(learned_netlink.py, ha_sync_sets.py). Each caller encodes its own keys and data.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from gatewayd.apply.nfqueue_config import NETLINK_NETFILTER, NFGEN_HEADER, NFNETLINK_V0, NLM_F_ACK, NLM_F_REQUEST
from gatewayd.apply.tc_netlink import HEADER, acknowledgements, encode_attribute

NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DESTROYSETELEM = 30  # Linux 6.3 (uapi nf_tables.h: after NFT_MSG_DESTROYSET)
NLM_F_CREATE = 0x400
NLA_F_NESTED = 0x8000
NFPROTO_BY_FAMILY = {"inet": 1, "ip": 2, "netdev": 5, "ip6": 10}

NFTA_SET_ELEM_LIST_TABLE, NFTA_SET_ELEM_LIST_SET, NFTA_SET_ELEM_LIST_ELEMENTS = 1, 2, 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY, NFTA_SET_ELEM_DATA, NFTA_SET_ELEM_TIMEOUT = 1, 2, 4
NFTA_DATA_VALUE, NFTA_DATA_VERDICT = 1, 2

SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # an error ack without a copy of the (up to ~60 KiB) message it answers
RECEIVE_BUFFER_BYTES = 1 << 16
SOCKET_TIMEOUT_SECONDS = 5.0  # the kernel answers a batch while handling it: only a broken kernel waits


class ElementBatchError(RuntimeError):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class DestroyUnsupported(ElementBatchError):
    """The kernel does not know NFT_MSG_DESTROYSETELEM (before Linux 6.3)."""


@dataclass(frozen=True)
class ElementWrite:
    """The elements of one set or map to replace: each one's key attribute (NFTA_SET_ELEM_KEY) and the
    list element that adds it (NFTA_LIST_ELEM: key, timeout, data), in the same order."""

    family: str
    table: str
    set_name: str
    keys: Sequence[bytes]
    added: Sequence[bytes]


def nested(kind: int, payload: bytes) -> bytes:
    return encode_attribute(kind | NLA_F_NESTED, payload)


def strz(text: str) -> bytes:
    return text.encode() + b"\0"


def key_attribute(value: bytes) -> bytes:
    """A set element's key: `value` as the set's key type holds it (concatenations padded per field)."""
    return nested(NFTA_SET_ELEM_KEY, encode_attribute(NFTA_DATA_VALUE, value))


def timeout_attribute(seconds: int) -> bytes:
    return encode_attribute(NFTA_SET_ELEM_TIMEOUT, struct.pack("!Q", seconds * 1000))


def added_element(key: bytes, timeout_seconds: int, data: bytes = b"") -> bytes:
    """The list element that adds `key` with its timeout (and a map's data attribute)."""
    return nested(NFTA_LIST_ELEM, key + timeout_attribute(timeout_seconds) + data)


def destroyed_element(key: bytes) -> bytes:
    return nested(NFTA_LIST_ELEM, key)


def element_list_message(message_type: int, flags: int, family: str, table: str, set_name: str,
                         elements: bytes, sequence: int) -> bytes:
    body = (NFGEN_HEADER.pack(NFPROTO_BY_FAMILY[family], NFNETLINK_V0, 0)
            + encode_attribute(NFTA_SET_ELEM_LIST_TABLE, strz(table))
            + encode_attribute(NFTA_SET_ELEM_LIST_SET, strz(set_name))
            + nested(NFTA_SET_ELEM_LIST_ELEMENTS, elements))
    return HEADER.pack(HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | message_type,
                       NLM_F_REQUEST | NLM_F_ACK | flags, sequence, 0) + body


def batch_marker(message_type: int, sequence: int) -> bytes:
    # The batch's begin and end name the subsystem in the resource id, big-endian.
    body = NFGEN_HEADER.pack(socket.AF_UNSPEC, NFNETLINK_V0, socket.htons(NFNL_SUBSYS_NFTABLES))
    return HEADER.pack(HEADER.size + len(body), message_type, NLM_F_REQUEST, sequence, 0) + body


def replace_elements_batch(writes: Sequence[ElementWrite], first_sequence: int) -> tuple[bytes, dict[int, str]]:
    """One nf_tables transaction that destroys then adds every element of every write; and what each
    acknowledged message was ("destroy" or "add", by sequence number)."""
    frames = [batch_marker(NFNL_MSG_BATCH_BEGIN, first_sequence)]
    kinds: dict[int, str] = {}
    sequence = first_sequence
    for write in writes:
        if not write.keys:
            continue
        bodies = (("destroy", NFT_MSG_DESTROYSETELEM, 0, b"".join(destroyed_element(key) for key in write.keys)),
                  ("add", NFT_MSG_NEWSETELEM, NLM_F_CREATE, b"".join(write.added)))
        for kind, message_type, flags, body in bodies:
            sequence += 1
            kinds[sequence] = kind
            frames.append(element_list_message(message_type, flags, write.family, write.table, write.set_name,
                                               body, sequence))
    frames.append(batch_marker(NFNL_MSG_BATCH_END, sequence + 1))
    return b"".join(frames), kinds


def batch_outcome(kinds: dict[int, str], first_sequence: int, codes: dict[int, int]) -> None:
    """Raise for a refused batch: DestroyUnsupported when only the destroys were refused as unknown."""
    begin_code = codes.get(first_sequence, 0)  # a failed commit is told on the batch's begin
    failed = {sequence: code for sequence, code in codes.items() if code != 0 and sequence in kinds}
    if not failed and begin_code == 0:
        return
    if failed and all(kinds[s] == "destroy" for s in failed) and \
            all(-code in (errno.EINVAL, errno.EOPNOTSUPP) for code in failed.values()):
        raise DestroyUnsupported("the kernel has no NFT_MSG_DESTROYSETELEM", -next(iter(failed.values())))
    code = -(next(iter(failed.values())) if failed else begin_code)
    raise ElementBatchError(f"set elements: {os.strerror(code)}", code)


class ElementSocket:
    """A netlink socket for set-element transactions (one thread's)."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None
        self._sequence = 0

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.bind((0, 0))
            sock.settimeout(SOCKET_TIMEOUT_SECONDS)
            self._socket = sock
        return self._socket

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def replace(self, writes: Sequence[ElementWrite]) -> None:
        """Destroy and add the elements in one transaction; ElementBatchError if the kernel refused it
        (nothing of it applied), OSError if the socket failed."""
        first = self._sequence + 1
        frames, kinds = replace_elements_batch(writes, first)
        if not kinds:
            return
        self._sequence = (first + len(kinds) + 1) & 0x7FFF_FFFF
        sock = self._open()
        try:
            sock.sendall(frames)
            codes: dict[int, int] = {}
            while not all(sequence in codes for sequence in kinds):
                for sequence, code in acknowledgements(sock.recv(RECEIVE_BUFFER_BYTES)):
                    codes.setdefault(sequence, code)
        except OSError:
            self.close()  # a half-read answer would be misread by the next batch
            raise
        batch_outcome(kinds, first, codes)
