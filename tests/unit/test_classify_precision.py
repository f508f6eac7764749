"""Never a wrong name: weak evidence (a shared framing, a port) must not name a specific app.

Packets are built here from each protocol's published format, not cut from captures.
"""

from __future__ import annotations

import struct

from scapy.all import IP, TCP, Raw

from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.signatures import SIGNATURE_PROTOCOLS, SIGNATURES
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.applications import load_catalog

CLIENT, SERVER = "192.0.2.20", "203.0.113.30"


def tpkt_x224(tpdu_code: int, variable: bytes) -> bytes:
    """RFC 1006 TPKT around an X.224 CR/CC: LI, code, DST-REF, SRC-REF, class 0, then the variable part."""
    x224 = bytes((6 + len(variable), tpdu_code)) + b"\x00\x00" + b"\x12\x34" + b"\x00" + variable
    return b"\x03\x00" + struct.pack("!H", 4 + len(x224)) + x224


RDP_NEG_REQ = struct.pack("<BBHI", 0x01, 0x00, 8, 0x0000000B)  # TLS | CredSSP | RDSTLS requested
RDP_NEG_RSP = struct.pack("<BBHI", 0x02, 0x1F, 8, 0x00000002)
# ISO transport (S7comm, MMS): TSAP parameters, code / length / value.
ISO_TSAP_PARAMETERS = b"\xc0\x01\x0a" + b"\xc1\x02\x01\x00" + b"\xc2\x02\x01\x02"


def test_rdp_needs_its_own_variable_part_not_just_iso_transport() -> None:
    rdp = SIGNATURES["rdp"]
    assert rdp(tpkt_x224(0xE0, b"Cookie: mstshash=alice\r\n" + RDP_NEG_REQ), True)
    assert rdp(tpkt_x224(0xE0, RDP_NEG_REQ), True)
    assert rdp(tpkt_x224(0xE0, b""), True)  # pre-5.0 clients: no negotiation
    correlation = struct.pack("<BBH", 0x06, 0, 36) + bytes(32)
    assert rdp(tpkt_x224(0xE0, struct.pack("<BBHI", 0x01, 0x08, 8, 3) + correlation), True)
    assert rdp(tpkt_x224(0xD0, RDP_NEG_RSP), False)
    assert rdp(tpkt_x224(0xD0, b""), False)
    assert not rdp(tpkt_x224(0xE0, ISO_TSAP_PARAMETERS), True)  # S7comm / MMS connection request
    assert not rdp(tpkt_x224(0xD0, ISO_TSAP_PARAMETERS), False)
    assert not rdp(tpkt_x224(0xE0, b"Cookie: mstshash=no-line-end"), True)
    assert not rdp(tpkt_x224(0xE0, struct.pack("<BBHI", 0x01, 0, 9, 3)), True)  # length must be 8


def gnutella_descriptor(function: int, body: bytes) -> bytes:
    guid = bytes(range(1, 17))
    return guid + bytes((function, 7, 0)) + struct.pack("<I", len(body)) + body


def test_gnutella_binary_descriptor_is_trusted_on_udp_only() -> None:
    ping = gnutella_descriptor(0x00, b"")
    assert SIGNATURES["gnutella_udp"](ping, True)
    assert not SIGNATURES["gnutella"](ping, True)
    assert SIGNATURES["gnutella"](b"GNUTELLA CONNECT/0.6\r\nUser-Agent: x\r\n\r\n", True)
    assert SIGNATURE_PROTOCOLS["gnutella"] == frozenset((6,))
    assert SIGNATURE_PROTOCOLS["gnutella_udp"] == frozenset((17,))


def builtin_classifier() -> Classifier:
    issues: list[object] = []
    catalog = load_catalog(None, issues)
    assert not issues
    return Classifier(ClassifierTables.build(catalog.values()), max_packets=4)


def test_mysql_and_ceph_ports_are_not_sap() -> None:
    classifier = builtin_classifier()
    for port in (3306, 3300):
        packets = [IP(src=CLIENT, dst=SERVER) / TCP(sport=41000, dport=port, flags="S", seq=1)]
        packets += [IP(src=CLIENT, dst=SERVER) / TCP(sport=41000, dport=port, flags="A", seq=2, ack=1)] * 3
        decisions = [d for d in (classifier.on_packet(bytes(p), 1.0 + i).decision for i, p in enumerate(packets)) if d]
        assert decisions == [Decision("unknown", "give-up", f"tcp/{port}")]
    syn = IP(src=CLIENT, dst=SERVER) / TCP(sport=41001, dport=3200, flags="S", seq=1) / Raw(b"")
    ack = IP(src=CLIENT, dst=SERVER) / TCP(sport=41001, dport=3200, flags="A", seq=2, ack=1)
    last = [classifier.on_packet(bytes(p), 9.0).decision for p in (syn, ack, ack, ack)][-1]
    assert last == Decision("sap", "port", "tcp/3200")  # the SAP GUI dispatcher stays
