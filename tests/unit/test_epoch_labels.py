"""Clearing ct label bits through ctnetlink (apply/epoch_labels.py): the messages, byte by byte.

The real kernel's side is tests/integration/test_decided_flows.py
(test_clearing_epoch_label_bits_leaves_every_other_label_bit_alone).
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import cast

import pytest

from gatewayd.apply import epoch_labels
from gatewayd.apply.epoch_labels import LabelledEntry, clear_request, parse_entry
from gatewayd.apply.tc_netlink import HEADER, encode_attribute

NESTED = 0x8000
CT_NEW_TYPE = (1 << 8) | 0  # NFNL_SUBSYS_CTNETLINK, IPCTNL_MSG_CT_NEW
NLM_F_REQUEST, NLM_F_ACK, NLM_F_CREATE = 0x1, 0x4, 0x400
NLMSG_ERROR = 2

# 192.0.2.10:40000 -> 198.51.100.7:443, TCP, as the kernel nests it.
TUPLE_ORIG = encode_attribute(1 | NESTED, encode_attribute(1 | NESTED, encode_attribute(1, bytes([192, 0, 2, 10]))
                                                           + encode_attribute(2, bytes([198, 51, 100, 7])))
                              + encode_attribute(2 | NESTED, encode_attribute(1, b"\x06")
                                                 + encode_attribute(2, struct.pack("!H", 40000))
                                                 + encode_attribute(3, struct.pack("!H", 443))))
TUPLE_REPLY = TUPLE_ORIG.replace(struct.pack("=HH", len(TUPLE_ORIG), 1 | NESTED),
                                 struct.pack("=HH", len(TUPLE_ORIG), 2 | NESTED), 1)
ZONE = encode_attribute(18, struct.pack("!H", 7))


def dumped_entry(*attributes: bytes, family: int = socket.AF_INET) -> bytes:
    """An IPCTNL_MSG_CT_NEW message as a conntrack dump delivers it."""
    body = struct.pack("=BBH", family, 0, 0) + b"".join(attributes)
    return HEADER.pack(HEADER.size + len(body), CT_NEW_TYPE, 0x2, 1, 0) + body  # NLM_F_MULTI


def labels(value: int) -> bytes:
    return encode_attribute(22, struct.pack("=QQ", value & (2**64 - 1), value >> 64))


def test_a_dumped_entry_keeps_its_original_tuple_and_zone_verbatim_and_its_label_bits() -> None:
    mark = encode_attribute(8, struct.pack("!I", 0x1234))
    message = b"junk" + dumped_entry(TUPLE_ORIG, TUPLE_REPLY, mark, ZONE, labels(1 << 70 | 1 << 5))
    entry = parse_entry(message, 4, len(message) - 4)
    assert entry == LabelledEntry(socket.AF_INET, TUPLE_ORIG + ZONE, 1 << 70 | 1 << 5)


def test_an_entry_without_labels_has_none_and_an_ipv6_one_keeps_its_family() -> None:
    message = dumped_entry(TUPLE_ORIG, family=socket.AF_INET6)
    assert parse_entry(message, 0, len(message)) == LabelledEntry(socket.AF_INET6, TUPLE_ORIG, 0)


def test_the_update_names_the_entry_and_clears_only_the_given_bits() -> None:
    entry = LabelledEntry(socket.AF_INET6, TUPLE_ORIG + ZONE, 1 << 70 | 1 << 5)
    message = clear_request(entry, 1 << 70 | 1 << 1, sequence=42)
    length, kind, flags, sequence, port = HEADER.unpack_from(message)
    assert (length, kind, sequence, port) == (len(message), CT_NEW_TYPE, 42, 0)
    assert flags == NLM_F_REQUEST | NLM_F_ACK  # no NLM_F_CREATE: an entry that ended is not made again
    assert not flags & NLM_F_CREATE
    expected_body = (struct.pack("=BBH", socket.AF_INET6, 0, 0) + TUPLE_ORIG + ZONE
                     + encode_attribute(22, bytes(16))
                     + encode_attribute(23, struct.pack("=QQ", 1 << 1, 1 << 6)))
    assert message[HEADER.size:] == expected_body


class FakeNetlink:
    """Answers every update of a chunk with the errno the test picks for its tuple."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.sent = b""

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def recv(self, _size: int) -> bytes:
        answers = b""
        offset = 0
        for code in self.codes:
            length, _kind, _flags, sequence, _port = HEADER.unpack_from(self.sent, offset)
            # struct nlmsgerr: the negative errno (0: done), then the request's own header.
            payload = struct.pack("=i", -code) + self.sent[offset:offset + HEADER.size]
            answers += HEADER.pack(HEADER.size + len(payload), NLMSG_ERROR, 0, sequence, 0) + payload
            offset += length
        self.codes = []
        return answers


def send(codes: list[int]) -> int:
    entries = [LabelledEntry(socket.AF_INET, TUPLE_ORIG, 1 << 70)] * len(codes)
    return epoch_labels._send_updates(cast(socket.socket, FakeNetlink(codes)), entries, 1 << 70)


def test_updates_count_what_the_kernel_changed_and_a_flow_gone_meanwhile_is_no_error() -> None:
    assert send([0, errno.ENOENT, 0]) == 2


def test_a_refused_update_is_an_os_error() -> None:
    with pytest.raises(OSError) as raised:
        send([0, errno.EPERM])
    assert raised.value.errno == errno.EPERM
