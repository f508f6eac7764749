"""Hypothesis fuzzing: parsers and Classifier.on_packet never raise, on random and mutated real bytes.

The engine swallows exceptions by design (a bug must not stop the queue), so
for on_packet the property is stronger: its internal-error counter stays 0.
"""

from __future__ import annotations

import functools
import os
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gatewayd.classify import dns, http, tls
from gatewayd.classify.engine import Classifier
from gatewayd.classify.packet import parse_packet
from gatewayd.classify.signatures import SIGNATURES
from gatewayd.classify.tables import ClassifierTables

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_pcaps import PCAPS, read_ip_packets, test_catalog

# CLASSIFY_FUZZ_EXAMPLES=20000 for a long soak; the default keeps the unit run fast.
FUZZ = settings(max_examples=int(os.environ.get("CLASSIFY_FUZZ_EXAMPLES", "400")), deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
_SAMPLE_CAPTURES = ("dns.pcap", "dingtalk.pcap", "netflix.pcap", "bittorrent.pcap", "ssh.pcap", "http.pcapng",
                    "http_ipv6.pcap", "wireguard.pcap", "openvpn.pcap", "dns_fragmented.pcap", "quic-27.pcap")


@functools.cache
def real_packets() -> tuple[bytes, ...]:
    packets: list[bytes] = []
    for name in _SAMPLE_CAPTURES:
        if (PCAPS / name).exists():
            packets.extend(packet for _, packet in list(read_ip_packets(PCAPS / name))[:60])
    # Always have something to mutate, even without the captures.
    return tuple(packets) or (bytes.fromhex("4500002c000100004006000a0a0000010a000002"
                                            "04d201bb00000001000000005018ffff00000000") + b"GET / HTTP/1.1\r\n",)


@functools.cache
def real_payloads() -> tuple[bytes, ...]:
    payloads = []
    for packet in real_packets():
        info = parse_packet(packet)
        if info is not None and info.payload:
            payloads.append(bytes(info.payload))
    return tuple(payloads) or (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",)


def _mutate(data: bytes, cut: int, flips: list[tuple[int, int]], insert: bytes) -> bytes:
    mutated = bytearray(data)
    for position, value in flips:
        if mutated:
            mutated[position % len(mutated)] = value
    if insert and mutated:
        at = cut % len(mutated)
        mutated[at:at] = insert
    return bytes(mutated[:max(cut, 1) if cut < len(mutated) else len(mutated)])


mutations = st.tuples(st.integers(0, 3000), st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=6),
                      st.binary(max_size=8))


@st.composite
def mutated_real_packet(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(real_packets()))
    return _mutate(base, *draw(mutations))


@st.composite
def mutated_real_payload(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from(real_payloads()))
    return _mutate(base, *draw(mutations))


@st.composite
def ip_header_with_random_body(draw: st.DrawFn) -> bytes:
    """Plausible IPv4/IPv6 headers (so fuzzing gets past the first checks) over random L4 bytes."""
    body = draw(st.binary(max_size=200))
    proto = draw(st.sampled_from([6, 17, 0, 43, 44, 51, 60, 59, 1, 58]))
    if draw(st.booleans()):
        ihl = draw(st.integers(5, 15))
        options = draw(st.binary(min_size=(ihl - 5) * 4, max_size=(ihl - 5) * 4))
        total = draw(st.sampled_from([20 + len(options) + len(body), 0, draw(st.integers(0, 0xFFFF))]))
        flags_fragment = draw(st.sampled_from([0, 0x2000, 0x4000, draw(st.integers(0, 0xFFFF))]))
        header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, flags_fragment, 64, proto, 0,
                             b"\x0a\x00\x00\x01", b"\xcb\x00\x71\x05")
        return header + options + body
    length = draw(st.sampled_from([len(body), 0, draw(st.integers(0, 0xFFFF))]))
    header = struct.pack("!IHBB16s16s", 0x60000000, length, proto, 64, bytes(15) + b"\x01", bytes(15) + b"\x02")
    return header + body


ALL_BYTES = st.one_of(st.binary(max_size=300), mutated_real_payload())


@FUZZ
@given(st.one_of(st.binary(max_size=300), mutated_real_packet(), ip_header_with_random_body()))
@example(b"\x60" + bytes(5) + b"\x00\x00" + bytes(32))  # IPv6, hop-by-hop next header, no room for it
@example(b"\x45\x00\x00\x00" + bytes(16))  # total length 0 (GSO) with no L4
@example(bytes.fromhex("4f00001400000000") + bytes(12))  # IHL 60 > total length
def test_parse_packet_never_raises(data: bytes) -> None:
    info = parse_packet(data)
    if info is not None:
        assert info.version in (4, 6) and len(info.src) == len(info.dst) in (4, 16)
        assert len(info.payload) <= len(data)


@FUZZ
@given(ALL_BYTES)
@example(b"\x00\x01\x81\x80\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01")  # self-pointer
@example(b"\x00\x01\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x00\x00\x01\x00\x01"
         b"\x00\x00\x05\x00\x01\x00\x00\x00\x00\x00\x02\xc0\x20")  # CNAME rdata with a forward pointer
def test_dns_parser_never_raises(data: bytes) -> None:
    message = dns.parse_dns(data)
    if message is not None:
        dns.resolve_answers(message)
    dns.parse_dns_tcp(data)
    dns.parse_dns_tcp(len(data).to_bytes(2, "big") + data)


@FUZZ
@given(ALL_BYTES)
@example(b"\x16\x03\x01\x00\x04\x01\xff\xff\xff")  # hello length far beyond the record
@example(b"\x16\x03\x01\x00\x2a\x01\x00\x00\x26\x03\x03" + bytes(32) + b"\x00\x00\x02\x00")  # truncated suites
def test_tls_parser_never_raises(data: bytes) -> None:
    result = tls.parse_client_hello(data)
    assert result in (tls.NEED_MORE, tls.NOT_TLS) or isinstance(result, tls.TlsClientHello)


@FUZZ
@given(ALL_BYTES)
@example(b"GET / HTTP/1.1\r\nHost: [\r\n\r\n")  # unterminated IPv6 literal
@example(b"GET \xff HTTP/1.1\nHost:\n\n")
def test_http_parser_never_raises(data: bytes) -> None:
    result = http.parse_request(data)
    assert result in (http.NEED_MORE, http.NOT_HTTP) or isinstance(result, http.HttpRequest)


@FUZZ
@given(ALL_BYTES, st.booleans())
def test_signatures_never_raise(data: bytes, direction_is_client: bool) -> None:
    for match in SIGNATURES.values():
        assert match(data, direction_is_client) in (True, False)


@FUZZ
@given(st.lists(st.one_of(mutated_real_packet(), ip_header_with_random_body(), st.sampled_from(real_packets())),
                min_size=1, max_size=30))
def test_on_packet_never_fails(packets: list[bytes]) -> None:
    classifier = Classifier(ClassifierTables.build(test_catalog()), max_packets=4, max_flows=16)
    for index, packet in enumerate(packets):
        outcome = classifier.on_packet(packet, 1000.0 + index)
        assert outcome.decision is None or outcome.decision.app
    assert classifier.stats.internal_errors == 0
    assert classifier.flow_count <= 16


@pytest.mark.parametrize("packet", [
    b"",
    b"\x45",
    # fragment extension header, offset 0, no TCP
    b"\x60\x00\x00\x00\x00\x00\x2c\x40" + bytes(32) + b"\x06\x00\x00\x01" + bytes(4),
    # more-fragments set, and a UDP length past the fragment
    b"\x45\x00\x00\x1c\x00\x01\x20\x00\x40\x11\x00\x00" + bytes(8) + b"\x00\x35\x00\x35\x01\x00\x00\x00",
])
def test_regressions_on_packet(packet: bytes) -> None:
    classifier = Classifier(ClassifierTables.build(test_catalog()))
    classifier.on_packet(packet, 0.0)
    assert classifier.stats.internal_errors == 0
