"""Parsers of gatewayd.classify: packet, DNS, TLS, HTTP, signatures, domains, tables."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
import tracemalloc

import pytest
from scapy.all import (
    DNS,
    DNSQR,
    DNSRR,
    IP,
    TCP,
    UDP,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    Raw,
    fragment,
)

from gatewayd.classify import http, tls
from gatewayd.classify.dns import TYPE_A, TYPE_CNAME, parse_dns, parse_dns_tcp, resolve_answers
from gatewayd.classify.domains import DomainMatcher
from gatewayd.classify.packet import PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN, parse_packet
from gatewayd.classify.signatures import KNOWN_SIGNATURES, SIGNATURES, check_registry_matches
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.model import SIGNATURE_NAMES, Application, PortMatch


def client_hello(server_name: str | None, alpn: tuple[bytes, ...] = (b"h2", b"http/1.1"),
                 padding: int = 0) -> bytes:
    """A minimal but well-formed TLS 1.3-style ClientHello record, built by hand."""
    extensions = b""
    if server_name is not None:
        name = server_name.encode()
        sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
        extensions += struct.pack("!HH", 0, len(sni)) + sni
    if alpn:
        alpn_list = b"".join(bytes([len(p)]) + p for p in alpn)
        extensions += struct.pack("!HHH", 16, len(alpn_list) + 2, len(alpn_list)) + alpn_list
    if padding:
        extensions += struct.pack("!HH", 21, padding) + bytes(padding)
    body = (b"\x03\x03" + bytes(32) + b"\x20" + bytes(range(32)) + struct.pack("!H", 4)
            + b"\x13\x01\x13\x02" + b"\x01\x00" + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


# ----------------------------------------------------------------------------- packet


def test_ipv4_tcp_fields() -> None:
    raw = bytes(IP(src="192.0.2.101", dst="192.0.2.7") / TCP(sport=1234, dport=443, flags="PA", seq=77) / Raw(b"hi"))
    info = parse_packet(raw)
    assert info is not None
    assert (info.version, info.proto) == (4, PROTO_TCP)
    assert ipaddress.ip_address(info.src) == ipaddress.ip_address("192.0.2.101")
    assert ipaddress.ip_address(info.dst) == ipaddress.ip_address("192.0.2.7")
    assert (info.sport, info.dport, info.tcp_seq, info.payload) == (1234, 443, 77, b"hi")
    assert info.tcp_flags & TCP_ACK and not info.tcp_flags & TCP_SYN


def test_ipv4_options_and_tcp_options_are_skipped() -> None:
    from scapy.all import IPOption_RR
    raw = bytes(IP(src="192.0.2.101", dst="192.0.2.102", options=[IPOption_RR()])
                / TCP(sport=1, dport=2, options=[("MSS", 1460), ("NOP", None), ("WScale", 7)]) / Raw(b"data"))
    info = parse_packet(raw)
    assert info is not None and info.payload == b"data" and (info.sport, info.dport) == (1, 2)


def test_ipv4_udp_and_trailing_ethernet_padding_ignored() -> None:
    raw = bytes(IP(src="192.0.2.101", dst="192.0.2.102") / UDP(sport=5, dport=53) / Raw(b"q"))
    info = parse_packet(raw + b"\x00" * 10)  # short frames arrive padded: total length rules
    assert info is not None and info.proto == PROTO_UDP and info.payload == b"q"


def test_zero_link_padding_counted_in_a_bare_ack_is_no_payload() -> None:
    # A 40-byte IPv4 ACK padded to Ethernet's 46-byte minimum, the padding counted in the IP length.
    padded_ack = bytes(IP(src="192.0.2.101", dst="192.0.2.102") / TCP(sport=5, dport=80, flags="A")
                       / Raw(b"\x00" * 6))
    info = parse_packet(padded_ack)
    assert info is not None and info.payload == b""
    # Real bytes stay data: non-zero, pushed, or longer than any padding could be.
    for flags, data in (("A", b"\x00\x01"), ("PA", b"\x00\x00"), ("A", b"\x00" * 7)):
        raw = bytes(IP(src="192.0.2.101", dst="192.0.2.102") / TCP(sport=5, dport=80, flags=flags) / Raw(data))
        kept = parse_packet(raw)
        assert kept is not None and kept.payload == data, (flags, data)


def test_ipv4_fragments() -> None:
    datagram = IP(src="192.0.2.101", dst="192.0.2.102", id=9) / UDP(sport=1000, dport=2000) / Raw(b"x" * 3000)
    first, *rest = fragment(datagram, fragsize=1480)
    head = parse_packet(bytes(first))
    assert head is not None and head.l4_present and head.fragmented and head.dport == 2000
    for later in rest:
        tail = parse_packet(bytes(later))
        assert tail is not None and not tail.l4_present and tail.payload == b""


def test_ipv6_extension_headers_are_walked() -> None:
    raw = bytes(IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
                / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / TCP(sport=5555, dport=80, flags="S") / Raw(b"GET"))
    info = parse_packet(raw)
    assert info is not None
    assert (info.version, info.proto, info.sport, info.dport, info.payload) == (6, PROTO_TCP, 5555, 80, b"GET")
    assert ipaddress.ip_address(info.dst) == ipaddress.ip_address("2001:db8::2")


def test_ipv6_fragments() -> None:
    first = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=0, m=1, id=5) \
        / UDP(sport=53, dport=4000) / Raw(b"a" * 64)
    later = IPv6(src="2001:db8::1", dst="2001:db8::2") / IPv6ExtHdrFragment(offset=100, m=0, id=5, nh=17) \
        / Raw(b"b" * 64)
    head = parse_packet(bytes(first))
    assert head is not None and head.l4_present and head.fragmented and head.sport == 53
    tail = parse_packet(bytes(later))
    assert tail is not None and not tail.l4_present and tail.proto == PROTO_UDP


@pytest.mark.parametrize("raw", [
    bytes(IP(src="192.0.2.101", dst="192.0.2.102") / TCP(sport=1, dport=2) / Raw(b"abc")),
    bytes(IPv6(src="::1", dst="::2") / IPv6ExtHdrHopByHop() / UDP(sport=1, dport=2) / Raw(b"abc")),
])
def test_every_truncation_is_none_or_valid(raw: bytes) -> None:
    for cut in range(len(raw)):
        assert parse_packet(raw[:cut]) is None  # the header claims more than there is
    assert parse_packet(raw) is not None


@pytest.mark.parametrize("garbage", [b"", b"\x00", b"\x45", b"\x60" * 39, b"\x4f" * 100,
                                     b"\x45\x00\x00\x14" + bytes(16), bytes(IP(ihl=15) / TCP()), b"\x46" + bytes(30)])
def test_garbage_packets(garbage: bytes) -> None:
    parse_packet(garbage)  # must not raise; the value may be None or a PacketInfo


def test_bad_tcp_data_offset_is_rejected() -> None:
    raw = bytearray(bytes(IP(src="192.0.2.101", dst="192.0.2.102") / TCP(sport=1, dport=2)))
    raw[32] = 0x30  # data offset 3 words < 5
    assert parse_packet(bytes(raw)) is None
    raw[32] = 0xF0  # 60 bytes, more than the packet holds
    assert parse_packet(bytes(raw)) is None


# ----------------------------------------------------------------------------- DNS


def dns_response(question: str, answers: list[DNSRR]) -> bytes:
    return bytes(DNS(id=7, qr=1, qd=DNSQR(qname=question), an=answers))


def test_dns_a_record_with_compression() -> None:
    raw = dns_response("www.Example.COM", [DNSRR(rrname="www.example.com", type="A", rdata="192.0.2.1", ttl=300)])
    message = parse_dns(raw)
    assert message is not None and message.is_response and message.question_name == "www.example.com"
    assert [(r.rtype, r.ttl, str(r.value)) for r in message.answers] == [(TYPE_A, 300, "192.0.2.1")]


def test_dns_hand_written_compression_pointers() -> None:
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 2, 0, 0)
    question = b"\x03www\x05youku\x03com\x00" + struct.pack("!HH", 1, 1)  # name at offset 12
    cname = b"\xc0\x0c" + struct.pack("!HHIH", TYPE_CNAME, 1, 60, 6) + b"\x03cdn\xc0\x10"  # cdn.youku.com
    owner_offset = 12 + len(question) + 12  # the "cdn" label inside the CNAME rdata
    address = bytes([0xC0, owner_offset]) + struct.pack("!HHIH", TYPE_A, 1, 120, 4) + bytes([198, 51, 100, 9])
    message = parse_dns(header + question + cname + address)
    assert message is not None
    assert message.answers[0].value == "cdn.youku.com"
    assert resolve_answers(message) == [
        (ipaddress.IPv4Address("198.51.100.9"), 120, ("www.youku.com", "cdn.youku.com"))]


@pytest.mark.parametrize("name_bytes", [
    b"\xc0\x0c",  # points at itself
    b"\x01a\xc0\x0c",  # label then a pointer back to its own start
    b"\xc0\x20",  # forward pointer
    b"\xc0",  # truncated pointer
    b"\x40abc\x00",  # reserved label type
    b"\x3f" + b"a" * 10,  # label runs past the end
])
def test_dns_bad_names_are_rejected(name_bytes: bytes) -> None:
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0)
    assert parse_dns(header + name_bytes + struct.pack("!HH", 1, 1)) is None


def test_dns_pointer_chain_loop_between_records() -> None:
    # Two names pointing at each other can't happen with strictly backward pointers; check it is refused.
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 1, 0, 0)
    question = b"\x01a\xc0\x0e" + struct.pack("!HH", 1, 1)  # offset 12: "a" then pointer to 14 (itself)
    assert parse_dns(header + question) is None


def test_dns_overlong_name_is_rejected() -> None:
    header = struct.pack("!HHHHHH", 1, 0x8180, 1, 0, 0, 0)
    name = (b"\x3f" + b"a" * 63) * 5 + b"\x00"  # 320 bytes > 255
    assert parse_dns(header + name + struct.pack("!HH", 1, 1)) is None


def test_dns_cname_chain_resolution() -> None:
    raw = dns_response("www.youku.com", [
        DNSRR(rrname="www.youku.com", type="CNAME", rdata="a.youku.gds.alibabadns.com", ttl=600),
        DNSRR(rrname="a.youku.gds.alibabadns.com", type="CNAME", rdata="b.cdn.example", ttl=60),
        DNSRR(rrname="b.cdn.example", type="A", rdata="203.0.113.5", ttl=20),
        DNSRR(rrname="b.cdn.example", type="AAAA", rdata="2001:db8::5", ttl=20),
        DNSRR(rrname="unrelated.example", type="A", rdata="203.0.113.66", ttl=20),  # not on the chain
    ])
    message = parse_dns(raw)
    assert message is not None
    chain = ("www.youku.com", "a.youku.gds.alibabadns.com", "b.cdn.example")
    assert resolve_answers(message) == [
        (ipaddress.IPv4Address("203.0.113.5"), 20, chain),
        (ipaddress.IPv6Address("2001:db8::5"), 20, chain),
    ]


def test_dns_cname_loop_terminates() -> None:
    raw = dns_response("a.example", [
        DNSRR(rrname="a.example", type="CNAME", rdata="b.example"),
        DNSRR(rrname="b.example", type="CNAME", rdata="a.example"),
        DNSRR(rrname="b.example", type="A", rdata="192.0.2.3"),
    ])
    message = parse_dns(raw)
    assert message is not None
    assert resolve_answers(message) == [(ipaddress.IPv4Address("192.0.2.3"), 0, ("a.example", "b.example"))]


def test_dns_tcp_framing_and_truncation() -> None:
    raw = dns_response("x.example", [DNSRR(rrname="x.example", type="A", rdata="192.0.2.9")])
    framed = struct.pack("!H", len(raw)) + raw
    message = parse_dns_tcp(framed)
    assert message is not None and message.question_name == "x.example"
    assert parse_dns_tcp(framed[:-1]) is None
    for cut in range(len(raw)):
        parse_dns(raw[:cut])  # never raises
    assert parse_dns(raw[:-1]) is None


def test_dns_query_has_no_answers() -> None:
    message = parse_dns(bytes(DNS(id=1, rd=1, qd=DNSQR(qname="example.org."))))
    assert message is not None and not message.is_response and message.answers == ()
    assert resolve_answers(message) == []


# ----------------------------------------------------------------------------- TLS


def test_tls_sni_and_alpn() -> None:
    hello = tls.parse_client_hello(client_hello("Static.DingTalk.com."))
    assert isinstance(hello, tls.TlsClientHello)
    assert hello.sni == "static.dingtalk.com" and hello.alpn == ("h2", "http/1.1")


def test_tls_client_hello_split_over_three_segments() -> None:
    record = client_hello("www.netflix.com", padding=2500)
    cuts = (3, 700, 1900)  # inside the record header, inside the hello, near the SNI-free tail
    segments = [record[:cuts[0]], record[cuts[0]:cuts[1]], record[cuts[1]:cuts[2]], record[cuts[2]:]]
    stream = b""
    for segment in segments[:-1]:
        stream += segment
        assert tls.parse_client_hello(stream) is tls.NEED_MORE
    stream += segments[-1]
    hello = tls.parse_client_hello(stream)
    assert isinstance(hello, tls.TlsClientHello) and hello.sni == "www.netflix.com"


def test_tls_hello_spanning_two_records() -> None:
    record = client_hello("split.example.com")
    handshake = record[5:]
    first, second = handshake[:40], handshake[40:]
    two_records = (b"\x16\x03\x01" + struct.pack("!H", len(first)) + first
                   + b"\x16\x03\x01" + struct.pack("!H", len(second)) + second)
    assert tls.parse_client_hello(two_records[:50]) is tls.NEED_MORE
    hello = tls.parse_client_hello(two_records)
    assert isinstance(hello, tls.TlsClientHello) and hello.sni == "split.example.com"


def test_tls_without_sni() -> None:
    hello = tls.parse_client_hello(client_hello(None, alpn=()))
    assert isinstance(hello, tls.TlsClientHello) and hello.sni is None and hello.alpn == ()


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"\x17\x03\x03\x00\x10", b"\x16\x02", b"\x16\x03\x09",
                                  b"\x16\x03\x01\x00\x10\x02", b"SSH-2.0-x", b"\x16\x03\x01\x00\x00"])
def test_not_tls(data: bytes) -> None:
    assert tls.parse_client_hello(data) is tls.NOT_TLS


def test_tls_prefixes_never_raise_and_lengths_lying() -> None:
    record = client_hello("a.example")
    for cut in range(len(record)):
        assert tls.parse_client_hello(record[:cut]) is tls.NEED_MORE
    broken = bytearray(record)
    broken[9 + 2 + 32] = 200  # session id length > 32
    assert tls.parse_client_hello(bytes(broken)) is tls.NOT_TLS


# ----------------------------------------------------------------------------- HTTP


def test_http_host_lowercase_port_stripped() -> None:
    request = http.parse_request(b"GET /index.html?q=1 HTTP/1.1\r\nUser-Agent: x\r\nHOST: WWW.Google.com:8080\r\n\r\n")
    assert isinstance(request, http.HttpRequest)
    assert (request.method, request.host, request.path) == ("GET", "www.google.com", "/index.html?q=1")


def test_http_ipv6_host_and_absolute_uri_and_connect() -> None:
    assert http.parse_request(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n").host == "2001:db8::1"
    assert http.parse_request(b"GET http://Proxy.Example:81/x HTTP/1.1\r\n\r\n").host == "proxy.example"
    assert http.parse_request(b"CONNECT tunnel.example:443 HTTP/1.1\r\n\r\n").host == "tunnel.example"
    assert http.parse_request(b"GET / HTTP/1.0\r\n\r\n").host is None


def test_http_need_more_and_not_http() -> None:
    full = b"POST /api HTTP/1.1\r\nContent-Length: 0\r\nHost: api.example\r\n\r\n"
    for cut in range(1, full.index(b"api.example\r\n") + len(b"api.example")):
        assert http.parse_request(full[:cut]) is http.NEED_MORE, full[:cut]
    assert http.parse_request(full).host == "api.example"
    for data in (b"\x16\x03\x01", b"GETX / HTTP/1.1\r\n", b"GET / FTP/1.0\r\n", b"GET  HTTP/1.1\r\n", b"HELLO"):
        assert http.parse_request(data) is http.NOT_HTTP, data


# ----------------------------------------------------------------------------- signatures


SIGNATURE_CASES = {
    "bittorrent": ([b"\x13BitTorrent protocol" + bytes(48), b"d1:ad2:id20:" + b"A" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe",
                    b"d1:rd2:id20:" + b"B" * 20 + b"e1:t2:aa1:y1:re",
                    b"\x41\x00\x12\x34" + b"\x00\x01\x02\x03" + bytes(4) + b"\x00\x10\x00\x00\x00\x01\x00\x00",
                    b"\x00\x00\x04\x17\x27\x10\x19\x80" + bytes(4) + b"\x12\x34\x56\x78"],
                   [b"\x13BitTorrent protoco", b"d1:ad2:id20:", b"\x41\x00" + bytes(18) + b"x", b"hello"]),
    "ssh": ([b"SSH-2.0-OpenSSH_8.2p1\r\n", b"SSH-1.99-Cisco\r\n", b"SSH-1.5-1.2.26\n"],
            [b"SSH-1.6-new\r\n", b"SSH-3.0-x\r\n", b"ssh-2.0-", b""]),
    "edonkey": ([b"\xe3" + struct.pack("<I", 5) + b"\x01abcd", b"\xc5" + struct.pack("<I", 1) + b"\x01"],
                [b"\xe3" + struct.pack("<I", 50) + b"\x01abcd", b"\xe3\x00\x00\x00\x00\x01", b"\x16\x03\x01\x00"]),
    "openvpn": ([bytes.fromhex("38334857703d96db390000000000"),
                 bytes.fromhex("000e38507a28a78275788d0000000000"),
                 bytes.fromhex("002a3892b8af4a777fc742781024c276d9a1a8c2321879a02264b3ccbc807700000001577e73b30000000000"),
                 bytes.fromhex("409ad747beb24d8a1b0100000000507a28a78275788d00000000")],
                [bytes.fromhex("38334857703d96db390000000001"), bytes(14), b"\x39" + bytes(13)]),
    "wireguard": ([b"\x01\x00\x00\x00" + bytes(144), b"\x02\x00\x00\x00" + bytes(88), b"\x03\x00\x00\x00" + bytes(60),
                   b"\x04\x00\x00\x00" + bytes(28), b"\x04\x00\x00\x00" + bytes(124)],
                  [b"\x01\x00\x00\x00" + bytes(145), b"\x01\x00\x00\x01" + bytes(144), b"\x04\x00\x00\x00" + bytes(30),
                   b"\x05\x00\x00\x00" + bytes(60)]),
    "stun": ([b"\x00\x01\x00\x00\x21\x12\xa4\x42" + bytes(12), b"\x01\x01\x00\x08\x21\x12\xa4\x42" + bytes(20)],
             [b"\x00\x01\x00\x04\x21\x12\xa4\x42" + bytes(12), b"\xc0\x01\x00\x00\x21\x12\xa4\x42" + bytes(12),
              b"\x00\x01\x00\x00\x21\x12\xa4\x43" + bytes(12)]),
}


@pytest.mark.parametrize("name", sorted(SIGNATURE_CASES))
def test_signatures(name: str) -> None:
    positives, negatives = SIGNATURE_CASES[name]
    match = SIGNATURES[name]
    for payload in positives:
        assert match(payload, True), payload
    for payload in negatives:
        assert not match(payload, True), payload


def test_signature_registry_complete() -> None:
    assert {"bittorrent", "ssh", "edonkey", "openvpn", "wireguard", "stun"} <= set(SIGNATURES)


def test_signature_registry_is_the_policy_vocabulary() -> None:
    assert frozenset(SIGNATURE_NAMES) == KNOWN_SIGNATURES


def test_signature_registry_check_names_both_sides_of_a_mismatch() -> None:
    check_registry_matches(frozenset({"ssh", "rdp"}), ("rdp", "ssh"))  # same names, any order: fine
    with pytest.raises(RuntimeError, match=r"named but not implemented: \['quake'\]; "
                                           r"implemented but not named: \['ssh'\]"):
        check_registry_matches(frozenset({"ssh", "rdp"}), ("rdp", "quake"))


def test_validating_signature_names_does_not_load_the_classifier() -> None:
    """The policy layer sits below classify/: checking `signatures:` must not import it."""
    probe = (
        "import sys\n"
        "from gatewayd.policy.fields import check_signature\n"
        "assert check_signature('bittorrent') == 'bittorrent'\n"
        "loaded = sorted(name for name in sys.modules if name.startswith('gatewayd.classify'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == ""


# ----------------------------------------------------------------------------- domains


def test_domain_pattern_semantics() -> None:
    matcher = DomainMatcher([("example.com", "suffix"), ("*.wild.com", "wild"), ("=exact.com", "exact")])
    assert matcher.lookup("example.com").app == "suffix"
    assert matcher.lookup("a.b.EXAMPLE.com.").app == "suffix"
    assert matcher.lookup("notexample.com") is None
    assert matcher.lookup("wild.com") is None
    assert matcher.lookup("x.wild.com").app == "wild"
    assert matcher.lookup("exact.com").app == "exact"
    assert matcher.lookup("www.exact.com") is None
    assert matcher.lookup("") is None and matcher.lookup("com") is None


def test_domain_most_specific_wins() -> None:
    matcher = DomainMatcher([("google.com", "google"), ("youtube.google.com", "youtube"),
                             ("*.ads.google.com", "ads"), ("=google.com", "google-home")])
    assert matcher.lookup("www.google.com").app == "google"
    assert matcher.lookup("m.youtube.google.com").app == "youtube"
    assert matcher.lookup("x.ads.google.com").app == "ads"
    assert matcher.lookup("ads.google.com").app == "google"  # "*." excludes the name itself
    assert matcher.lookup("google.com").app == "google-home"  # "=" beats the suffix pattern on the name
    assert matcher.lookup_any(["nothing.test", "mail.google.com"])[0] == "mail.google.com"


def test_an_exact_pattern_beats_the_plain_one_in_either_order_and_the_first_of_a_kind_keeps_it() -> None:
    before = DomainMatcher([("=shop.test", "exact"), ("shop.test", "plain"), ("=shop.test", "later")])
    after = DomainMatcher([("shop.test", "plain"), ("=shop.test", "exact"), ("shop.test", "later")])
    for matcher in (before, after):
        assert matcher.lookup("shop.test").app == "exact"
        assert matcher.lookup("www.shop.test").app == "plain"


def test_a_domain_entry_stays_small() -> None:
    """A reload holds two matchers of a 100,000-domain policy at once (measured: 217 bytes before, 90 now)."""
    names = [f"host{n}.blocked{n % 97}.test" for n in range(20_000)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        matcher = DomainMatcher((name, "blocked") for name in names)
        per_domain = (tracemalloc.get_traced_memory()[0] - before) / len(names)
    finally:
        tracemalloc.stop()
    assert matcher.lookup("x.host7.blocked7.test").app == "blocked"
    assert per_domain < 150, f"{per_domain:.0f} bytes per domain"


# ----------------------------------------------------------------------------- tables


def test_tables_addresses_ports_and_signatures() -> None:
    tables = ClassifierTables.build([
        Application(id="wide", name="Wide", category="web", networks=(ipaddress.ip_network("198.51.100.0/24"),)),
        Application(id="narrow", name="Narrow", category="web", networks=(ipaddress.ip_network("198.51.100.0/26"),)),
        Application(id="rdp-box", name="RDP", category="remote", networks=(ipaddress.ip_network("198.51.100.0/28"),),
                    ports=(PortMatch("tcp", 3389, 3389),)),
        Application(id="v6", name="V6", category="web", networks=(ipaddress.ip_network("2001:db8::/32"),)),
        Application(id="ssh", name="SSH", category="remote", ports=(PortMatch("tcp", 22, 22),), signatures=("ssh",)),
        Application(id="games", name="Games", category="game", ports=(PortMatch("udp", 27000, 27100),)),
        Application(id="bigrange", name="Big", category="game", ports=(PortMatch("udp", 1024, 65535),)),
        Application(id="odd", name="Odd", category="web", signatures=("no-such-signature",)),
    ])
    packed = ipaddress.ip_address
    assert tables.addresses.lookup(packed("198.51.100.200").packed, 6, 80).app == "wide"
    assert tables.addresses.lookup(packed("198.51.100.40").packed, 6, 80).app == "narrow"
    assert tables.addresses.lookup(packed("198.51.100.3").packed, 6, 3389).app == "rdp-box"
    assert tables.addresses.lookup(packed("198.51.100.3").packed, 6, 80).app == "narrow"  # port condition fails
    assert tables.addresses.lookup(packed("198.51.100.3").packed, 17, 3389).app == "narrow"
    assert tables.addresses.lookup(packed("2001:db8:1::1").packed, 6, 443).app == "v6"
    assert tables.addresses.lookup(packed("192.0.2.1").packed, 6, 443) is None
    assert tables.ports.lookup(6, 22) == "ssh"
    assert tables.ports.lookup(17, 27050) == "games"  # narrow range beats the wide one
    assert tables.ports.lookup(17, 40000) == "bigrange"
    assert tables.ports.lookup(6, 40000) is None
    assert tables.ports.lookup(6, 3389) is None  # rdp-box has networks: not a port-only app
    assert tables.signature_apps == {"ssh": ("ssh",)}
    assert tables.unknown_signatures == ("no-such-signature",)
