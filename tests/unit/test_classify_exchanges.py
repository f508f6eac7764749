"""Exchange signatures: an opening datagram and the answer that echoes it (Epic Online Services),
on datagrams built from the format, never cut from a capture."""

from __future__ import annotations

import os

from scapy.all import IP, UDP, Raw

from gatewayd.classify.engine import Classifier
from gatewayd.classify.sig_services import epic_answer, epic_opening
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.applications import load_catalog

CLIENT, SERVER = "192.0.2.50", "203.0.113.90"  # no app owns the server


def epic_datagram(word: int, zeros: int = 24, tail: int = 16) -> bytes:
    """A 32-bit header word, 6 bytes of session fields, `zeros` zero bytes from offset 10, a random tail."""
    return word.to_bytes(4, "big") + bytes.fromhex("0898aabbccdd") + bytes(zeros) + os.urandom(tail)


def classifier(max_packets: int = 8) -> Classifier:
    issues: list[object] = []
    catalog = load_catalog(None, issues)
    assert not issues
    return Classifier(ClassifierTables.build(catalog.values()), max_packets=max_packets)


def udp(payload: bytes, from_client: bool, sport: int = 41000, dport: int = 15011) -> bytes:
    if from_client:
        return bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=sport, dport=dport) / Raw(payload))
    return bytes(IP(src=SERVER, dst=CLIENT) / UDP(sport=dport, dport=sport) / Raw(payload))


def test_epic_opening_and_answer_halves() -> None:
    assert epic_opening(epic_datagram(0x471A2000)) == 0x471A2000
    assert epic_opening(epic_datagram(0x471A2008)) is None  # the answer bit set: not an opening
    assert epic_opening(epic_datagram(0x471A2000, zeros=23) + b"\x01") is None  # a non-zero byte at 33
    assert epic_opening(epic_datagram(0x471A2000)[:33]) is None  # too short
    assert epic_answer(b"\x47\x1a\x20\x08" + os.urandom(20), 0x471A2000)
    assert not epic_answer(b"\x47\x1a\x20\x00" + os.urandom(20), 0x471A2000)  # no answer bit
    assert not epic_answer(b"\x47\x1a\x20\x08", 0x471A2000)  # the word alone


def test_an_answer_echoing_the_opening_names_epic_games() -> None:
    engine = classifier()
    assert engine.on_packet(udp(epic_datagram(0x871A2000), True), 1.0).decision is None
    decision = engine.on_packet(udp(b"\x87\x1a\x20\x08" + os.urandom(40), False), 1.1).decision
    assert decision is not None and (decision.app, decision.method, decision.evidence) == (
        "epicgames", "signature", "epicgames")


def test_an_answer_that_does_not_echo_leaves_the_flow_unknown() -> None:
    engine = classifier(max_packets=3)
    decisions = [engine.on_packet(udp(epic_datagram(0x871A2000), True), 1.0).decision,
                 engine.on_packet(udp(b"\x12\x34\x56\x78" + os.urandom(40), False), 1.1).decision,
                 # a later echo does not count: only the server's first answer is the exchange's
                 engine.on_packet(udp(b"\x87\x1a\x20\x08" + os.urandom(40), False), 1.2).decision]
    assert decisions[:2] == [None, None]
    assert decisions[2] is not None and decisions[2].app == "unknown"


def test_an_opening_that_is_not_the_flows_first_datagram_opens_nothing() -> None:
    engine = classifier()
    assert engine.on_packet(udp(b"hello, not an opening" + bytes(20), True), 1.0).decision is None
    assert engine.on_packet(udp(epic_datagram(0x871A2000), True), 1.1).decision is None
    assert engine.on_packet(udp(b"\x87\x1a\x20\x08" + os.urandom(40), False), 1.2).decision is None
