"""QUIC Initial decryption: RFC key vectors, an independent encoder (v1, v2, split hellos), nDPI's captures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scapy.all import IP, UDP

from gatewayd.classify import quic
from gatewayd.classify.engine import Classifier
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab import quic_initial
from gatewayd.lab.captures import DEVELOPMENT_SET
from gatewayd.policy.model import Application

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_pcaps import classify_capture

RFC9001_DCID = bytes.fromhex("8394c8f03e515708")


def test_initial_keys_match_rfc_9001_and_9369_vectors() -> None:
    # RFC 9001 appendix A.1 and RFC 9369 appendix A.1: client Initial key, iv, hp.
    assert quic_initial.client_initial_keys(RFC9001_DCID, quic_initial.VERSION_1) == (
        bytes.fromhex("1f369613dd76d5467730efcbe3b1a22d"), bytes.fromhex("fa044b2f42a3fd3b46fb255c"),
        bytes.fromhex("9f50449e04a0e810283a1e9933adedd2"))
    assert quic_initial.client_initial_keys(RFC9001_DCID, quic_initial.VERSION_2) == (
        bytes.fromhex("8b1a0bc121284290a29e0971b5cd045d"), bytes.fromhex("91f73e2351d8fa91660e909f"),
        bytes.fromhex("45b95e15235d6f45a6b19cbcb0294ba9"))
    # The classifier derives the same keys through its own HKDF.
    params = quic._version_params(quic.VERSION_2)
    assert params is not None
    keys = quic._client_initial_keys(quic.VERSION_2, params, RFC9001_DCID)
    assert keys.iv == bytes.fromhex("91f73e2351d8fa91660e909f")


@pytest.mark.parametrize("version", [quic_initial.VERSION_1, quic_initial.VERSION_2,
                                     quic_initial.VERSION_MVFST_22, quic_initial.VERSION_MVFST_27])
@pytest.mark.parametrize("split", [False, True])
def test_parser_reads_sni_from_one_or_two_initials(version: int, split: bool) -> None:
    datagrams = quic_initial.client_initials("www.youtube.com", version=version, split=split)
    assert len(datagrams) == (2 if split else 1)
    state = quic.QuicState()
    results = [quic.feed(state, datagram) for datagram in datagrams]
    assert all(result is quic.NEED_MORE for result in results[:-1])
    hello = results[-1]
    assert isinstance(hello, quic.QuicHello)
    assert (hello.sni, hello.alpn, hello.version) == ("www.youtube.com", ("h3",), version)


def catalog() -> list[Application]:
    return [Application(id="youtube", name="YouTube", category="video", domains=("youtube.com", "googlevideo.com")),
            Application(id="google", name="Google", category="web", domains=("google.com", "google.it"))]


@pytest.mark.parametrize("split", [False, True])
def test_parser_reads_sni_from_google_q050_chlo(split: bool) -> None:
    # Q050: Initials protected with Chromium's Q050 salt, a gQUIC CHLO in CRYPTO frames of type 0x08.
    datagrams = quic_initial.client_initials("www.gstatic.com", version=quic_initial.VERSION_Q050, split=split)
    state = quic.QuicState()
    results = [quic.feed(state, datagram) for datagram in datagrams]
    assert all(result is quic.NEED_MORE for result in results[:-1])
    assert results[-1] == quic.QuicHello("www.gstatic.com", (), quic_initial.VERSION_Q050)


def test_q050_initial_with_a_tls_hello_inside_is_not_a_chlo() -> None:
    # The same protection around anything but a CHLO must not be read as one.
    dcid = bytes(8)
    hello = quic_initial.client_hello("www.gstatic.com")
    datagram = quic_initial._protect(quic_initial.VERSION_Q050, dcid, bytes(8), 0,
                                     b"\x08" + bytes((0,)) + quic_initial._varint(len(hello)) + hello)
    assert quic.feed(quic.QuicState(), datagram) is quic.NOT_QUIC


@pytest.mark.parametrize("version", [quic_initial.VERSION_1, quic_initial.VERSION_2])
def test_zero_rtt_packet_ahead_of_the_initial_keeps_the_flow_waiting_for_it(version: int) -> None:
    # A resuming client's 0-RTT data may reach the gateway before its Initial.
    dcid = bytes.fromhex("1122334455667788")
    state = quic.QuicState()
    assert quic.feed(state, quic_initial.zero_rtt_packet(dcid, version)) is quic.NEED_MORE
    hello = quic.feed(state, quic_initial.client_initials("ssl.gstatic.com", version=version, dcid=dcid)[0])
    assert isinstance(hello, quic.QuicHello) and hello.sni == "ssl.gstatic.com"


@pytest.mark.parametrize("version", [quic_initial.VERSION_1, quic_initial.VERSION_2,
                                     quic_initial.VERSION_MVFST_22, quic_initial.VERSION_MVFST_27,
                                     quic_initial.VERSION_Q050])
def test_engine_decides_quic_flow_on_its_initials(version: int) -> None:
    classifier = Classifier(ClassifierTables.build(catalog()))
    decisions = []
    for datagram in quic_initial.client_initials("rr3.googlevideo.com", version=version, split=True):
        packet = bytes(IP(src="192.0.2.10", dst="198.51.100.7") / UDP(sport=50000, dport=443) / datagram)
        outcome = classifier.on_packet(packet, 10.0)
        decisions.append(outcome.decision)
    assert decisions[0] is None  # the hello is not complete after the first Initial
    assert decisions[1] is not None
    assert (decisions[1].app, decisions[1].method, decisions[1].evidence) == (
        "youtube", "quic-sni", "rr3.googlevideo.com")
    assert f"quic-version={version:#010x}" in decisions[1].details


@pytest.mark.parametrize("version_tag", [b"Q043", b"Q046"])
def test_google_quic_clear_chlo_names_the_server(version_tag: bytes) -> None:
    datagram = quic_initial.gquic_clear_chlo_packet("r4---sn-4g5e6nsz.googlevideo.com", version_tag)
    hello = quic.feed(quic.QuicState(), datagram)
    assert hello == quic.QuicHello("r4---sn-4g5e6nsz.googlevideo.com", (), int.from_bytes(version_tag, "big"))
    classifier = Classifier(ClassifierTables.build(catalog()))
    packet = bytes(IP(src="192.0.2.10", dst="198.51.100.7") / UDP(sport=50001, dport=443) / datagram)
    decision = classifier.on_packet(packet, 10.0).decision
    assert decision is not None
    assert (decision.app, decision.method) == ("youtube", "quic-sni")
    assert f"quic-version={int.from_bytes(version_tag, 'big'):#010x}" in decision.details


@pytest.mark.parametrize("version_tag", [b"Q043", b"Q046"])
def test_google_quic_clear_chlo_with_a_broken_tag_table_is_not_quic(version_tag: bytes) -> None:
    datagram = bytearray(quic_initial.gquic_clear_chlo_packet("www.google.com", version_tag))
    table = datagram.find(b"CHLO") + 8
    datagram[table + 4:table + 8] = (0xFFFF).to_bytes(4, "little")  # the first value ends past the packet
    assert quic.feed(quic.QuicState(), bytes(datagram)) is quic.NOT_QUIC


def test_garbage_after_long_header_is_not_quic() -> None:
    datagram = bytearray(quic_initial.client_initials("a.example.com")[0])
    datagram[-5] ^= 0xFF  # break the AEAD tag: must be refused, never crash
    assert quic.feed(quic.QuicState(), bytes(datagram)) is quic.NOT_QUIC


@pytest.mark.captures(DEVELOPMENT_SET)
@pytest.mark.parametrize("capture,sni,version", [
    ("quic-27.pcap", "play.google.com", "0xff00001b"),       # IETF draft-27
    ("quic_t51.pcap", "www.google.com", "0x54303531"),       # Google T051 (TLS, frame type 0x08)
    ("quic046.pcap", "i.ytimg.com", "0x51303436"),           # Google Q046 (clear CHLO)
    ("youtube_quic.pcap", "yt3.ggpht.com", "0x51303335"),    # Google Q035 public header
])
def test_real_quic_captures(capture: str, sni: str, version: str) -> None:
    decisions, classifier = classify_capture(capture, catalog() + [
        Application(id="ytimg", name="x", category="video", domains=("ytimg.com", "ggpht.com"))])
    found = [d for d in decisions.values() if d.method == "quic-sni" and d.evidence == sni]
    assert found, decisions
    assert version in found[0].details
    assert classifier.stats.internal_errors == 0
