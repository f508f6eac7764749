"""Set elements read by a hand-packed netlink dump: the request and the answer, built from the uapi format."""

from __future__ import annotations

import socket
import struct

from gatewayd.apply.nfqueue_config import NFGEN_HEADER
from gatewayd.apply.set_dump_netlink import (
    NFT_MSG_GETSETELEM,
    SetElement,
    elements_of_message,
    get_elements_request,
)
from gatewayd.apply.set_elements_netlink import NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWSETELEM
from gatewayd.apply.tc_netlink import HEADER


def attribute(kind: int, payload: bytes, nested: bool = False) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind | (0x8000 if nested else 0)) + payload + b"\0" * (-length % 4)


def list_element(address: bytes, timeout_ms: int | None = None, expires_ms: int | None = None,
                 flags: int | None = None) -> bytes:
    # uapi nf_tables.h: NFTA_SET_ELEM_KEY 1 (nested NFTA_DATA_VALUE 1), FLAGS 3, TIMEOUT 4, EXPIRATION 5
    body = attribute(1, attribute(1, address), nested=True)
    if flags is not None:
        body += attribute(3, struct.pack("!I", flags))
    if timeout_ms is not None:
        body += attribute(4, struct.pack("!Q", timeout_ms))
    if expires_ms is not None:
        body += attribute(5, struct.pack("!Q", expires_ms))
    return attribute(1, body, nested=True)  # NFTA_LIST_ELEM


def newsetelem_message(*elements: bytes, message_type: int = NFT_MSG_NEWSETELEM) -> bytes:
    body = (NFGEN_HEADER.pack(1, 0, 0) + attribute(1, b"gatewayd\0") + attribute(2, b"hosts_waiting_v4\0")
            + attribute(3, b"".join(elements), nested=True))  # TABLE, SET, ELEMENTS
    return HEADER.pack(HEADER.size + len(body), NFNL_SUBSYS_NFTABLES << 8 | message_type, 2, 7, 0) + body


def test_the_request_names_family_table_and_set() -> None:
    body = get_elements_request("netdev", "gatewayd_guard", "blocklist_v4")
    assert NFGEN_HEADER.unpack_from(body) == (5, 0, 0)  # NFPROTO_NETDEV
    assert body[NFGEN_HEADER.size:] == attribute(1, b"gatewayd_guard\0") + attribute(2, b"blocklist_v4\0")
    assert NFT_MSG_GETSETELEM == 13


def test_addresses_and_times_come_from_each_list_element() -> None:
    message = newsetelem_message(list_element(socket.inet_pton(socket.AF_INET, "192.0.2.9"), 600_000, 599_123),
                                 list_element(socket.inet_pton(socket.AF_INET6, "2001:db8::5")))
    assert list(elements_of_message(message, 0, len(message))) == [
        SetElement("192.0.2.9", 600_000, 599_123), SetElement("2001:db8::5", None, None)]


def test_an_interval_end_and_other_messages_carry_no_element() -> None:
    end = list_element(socket.inet_pton(socket.AF_INET, "192.0.2.10"), flags=1)
    message = newsetelem_message(end, list_element(socket.inet_pton(socket.AF_INET, "192.0.2.11")))
    assert [e.address for e in elements_of_message(message, 0, len(message))] == ["192.0.2.11"]
    other = newsetelem_message(list_element(socket.inet_pton(socket.AF_INET, "192.0.2.12")), message_type=9)
    assert list(elements_of_message(other, 0, len(other))) == []


def test_messages_are_read_at_their_offset_in_the_datagram() -> None:
    first = newsetelem_message(list_element(socket.inet_pton(socket.AF_INET, "198.51.100.1")))
    second = newsetelem_message(list_element(socket.inet_pton(socket.AF_INET, "198.51.100.2")))
    data = first + second
    assert [e.address for e in elements_of_message(data, len(first), len(second))] == ["198.51.100.2"]
