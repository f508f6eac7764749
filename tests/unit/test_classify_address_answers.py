"""The address table remembers its answers (the verdict path's repeated lookups) without ever giving a stale one."""

from __future__ import annotations

import ipaddress

from gatewayd.classify import tables
from gatewayd.classify.tables import AddressTable

SERVER = ipaddress.ip_address("203.0.113.7").packed


def test_a_remembered_answer_is_dropped_when_the_table_changes() -> None:
    table = AddressTable()
    table.add(ipaddress.ip_network("203.0.113.0/24"), "wide")
    wide = table.lookup(SERVER, 6, 443)
    assert wide is not None and wide.app == "wide"
    assert table.lookup(ipaddress.ip_address("198.51.100.1").packed, 6, 443) is None  # a miss is remembered too
    table.add(ipaddress.ip_network("203.0.113.0/28"), "narrow", ((6, 443, 443),))
    narrow = table.lookup(SERVER, 6, 443)
    assert narrow is not None and (narrow.app, narrow.port_specific) == ("narrow", True)
    other_port = table.lookup(SERVER, 6, 80)  # the port is part of the question
    assert other_port is not None and other_port.app == "wide"


def test_remembered_answers_are_bounded() -> None:
    table = AddressTable()
    table.add(ipaddress.ip_network("10.0.0.0/8"), "private")
    for number in range(tables._MAX_REMEMBERED_ANSWERS + 100):
        match = table.lookup((0x0A000000 + number).to_bytes(4, "big"))
        assert match is not None and match.app == "private"
    assert len(table._answers) <= tables._MAX_REMEMBERED_ANSWERS
