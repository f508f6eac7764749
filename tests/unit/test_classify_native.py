"""Apps' own protocols and published media networks, on packets built from each format (not from captures)."""

from __future__ import annotations

import struct

import pytest
from scapy.all import DNS, DNSQR, IP, TCP, UDP, IPv6, Raw

from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.signatures import SIGNATURES
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.app_packets import QQ_KEEP_ALIVE as KEEP_ALIVE
from gatewayd.lab.app_packets import QQ_LOGIN as LOGIN
from gatewayd.lab.app_packets import QQ_SEND_MESSAGE as SEND_MESSAGE
from gatewayd.lab.app_packets import oicq
from gatewayd.policy.applications import load_catalog

CLIENT = "192.0.2.40"
QQ_SERVER = "203.0.113.8"


def test_qq_oicq_over_udp_and_tcp() -> None:
    qq = SIGNATURES["qq"]
    request = oicq(LOGIN, 0x1234, bytes(range(48)))
    reply = oicq(LOGIN, 0x1234, bytes(range(32)), qq_number=None)
    assert qq(request, True) and qq(reply, False)
    assert qq(oicq(KEEP_ALIVE, 7, bytes(16)), True) and qq(oicq(SEND_MESSAGE, 8, bytes(64)), True)
    assert qq(struct.pack("!H", 2 + len(request)) + request, True)  # TCP: the length counts itself
    assert qq(struct.pack("!H", len(request)) + request, True)  # ... or only the packet


@pytest.mark.parametrize("payload", [
    oicq(LOGIN, 1, bytes(48))[:-1] + b"\x00",  # no ETX
    oicq(0x1234, 1, bytes(48)),  # not a QQ command
    oicq(LOGIN, 1, bytes(48), version=0),
    b"\x02\x0e\x1b\x00\x22\x03",  # too short for the header
    struct.pack("!H", 99) + oicq(LOGIN, 1, bytes(48)),  # a TCP length that fits the packet neither way
    b"\x02\x00\x48\x00" + bytes(67) + b"\x04",  # STX but no ETX
    b"\x16\x03\x01\x00\x30" + bytes(48),  # a TLS record
])
def test_qq_rejects_what_the_format_excludes(payload: bytes) -> None:
    assert not SIGNATURES["qq"](payload, True)


def wangwang_string(text: bytes) -> bytes:
    """A string in AliWangWang's serialisation: tag 0x40, length byte, text."""
    return b"\x40" + bytes((len(text),)) + text


def wangwang_key_exchange(header: bytes = bytes(range(1, 10))) -> bytes:
    """The client's opening call: its frame header, then service "TcmCore", method "exchangeKey", a key."""
    return (header + wangwang_string(b"TcmCore") + wangwang_string(b"exchangeKey") + b"\x02\x00\x01\x40\x80"
            + bytes((index * 13) & 0xFF for index in range(128)))


def test_aliwangwang_key_exchange_call() -> None:
    match = SIGNATURES["aliwangwang"]
    assert match(wangwang_key_exchange(), True)
    assert match(wangwang_key_exchange(header=bytes(range(1, 8))), True)  # a 7-byte frame header


@pytest.mark.parametrize("payload", [
    wangwang_key_exchange(header=b""),  # no frame header at all
    wangwang_key_exchange(header=bytes(40)),  # the call far past any header
    bytes(9) + wangwang_string(b"TcmCore") + wangwang_string(b"login") + bytes(40),  # another method
    bytes(9) + b"\x40\x08TcmCore\x40\x0bexchangeKey" + bytes(40),  # a length that disagrees with the text
    b"GET /TcmCore/exchangeKey HTTP/1.1\r\n\r\n",
])
def test_aliwangwang_rejects_what_the_call_format_excludes(payload: bytes) -> None:
    assert not SIGNATURES["aliwangwang"](payload, True)


def test_aliwangwang_client_is_named_on_its_first_segment() -> None:
    classifier = builtin_classifier()
    syn = IP(src=CLIENT, dst=QQ_SERVER) / TCP(sport=40210, dport=443, flags="S", seq=10)
    data = IP(src=CLIENT, dst=QQ_SERVER) / TCP(sport=40210, dport=443, flags="PA", seq=11, ack=1) / Raw(
        wangwang_key_exchange())
    assert classifier.on_packet(bytes(syn), 1.0).decision is None
    assert classifier.on_packet(bytes(data), 1.1).decision == Decision("aliwangwang", "signature", "aliwangwang")


def builtin_classifier() -> Classifier:
    issues: list[object] = []
    catalog = load_catalog(None, issues)
    assert not issues
    return Classifier(ClassifierTables.build(catalog.values()))


def test_qq_client_over_udp_is_named_qq_on_its_first_packet() -> None:
    classifier = builtin_classifier()
    packet = IP(src=CLIENT, dst=QQ_SERVER) / UDP(sport=4000, dport=8000) / Raw(oicq(LOGIN, 1, bytes(range(40))))
    assert classifier.on_packet(bytes(packet), 1.0).decision == Decision("qq", "signature", "qq")
    keep_alive = oicq(KEEP_ALIVE, 2, bytes(49))
    stream = struct.pack("!H", 2 + len(keep_alive)) + keep_alive
    syn = IP(src=CLIENT, dst=QQ_SERVER) / TCP(sport=40200, dport=443, flags="S", seq=10)
    data = IP(src=CLIENT, dst=QQ_SERVER) / TCP(sport=40200, dport=443, flags="PA", seq=11, ack=1) / Raw(stream)
    assert classifier.on_packet(bytes(syn), 2.0).decision is None
    assert classifier.on_packet(bytes(data), 2.1).decision == Decision("qq", "signature", "qq")


def test_webex_media_to_its_published_network_is_webex() -> None:
    classifier = builtin_classifier()
    media = IP(src=CLIENT, dst="170.133.130.5") / UDP(sport=52000, dport=9000) / Raw(bytes(160))
    assert classifier.on_packet(bytes(media), 1.0).decision == Decision("webex", "address", "170.133.130.5")


def test_teams_media_to_microsofts_published_media_network_is_a_teams_call() -> None:
    classifier = builtin_classifier()
    media = IP(src=CLIENT, dst="13.107.64.20") / UDP(sport=50010, dport=3479) / Raw(bytes(120))
    assert classifier.on_packet(bytes(media), 1.0).decision == Decision("skype_teamscall", "address", "13.107.64.20")
    # The same network on another port is not a call by address alone.
    other = IP(src=CLIENT, dst="13.107.64.20") / UDP(sport=50011, dport=5000) / Raw(bytes(120))
    assert classifier.on_packet(bytes(other), 1.0).decision is None


@pytest.mark.parametrize("resolver", ["1.1.1.1", "8.8.4.4", "9.9.9.9", "223.5.5.5", "2001:4860:4860::8888"])
def test_public_resolvers_are_dns_over_https_on_443_only(resolver: str) -> None:
    classifier = builtin_classifier()
    network = IPv6 if ":" in resolver else IP
    client = "2001:db8::40" if ":" in resolver else CLIENT
    syn = network(src=client, dst=resolver) / TCP(sport=40300, dport=443, flags="S", seq=1)
    assert classifier.on_packet(bytes(syn), 1.0).decision == Decision("doh_dot", "address", resolver)
    quic = network(src=client, dst=resolver) / UDP(sport=40301, dport=443) / Raw(bytes(1200))
    assert classifier.on_packet(bytes(quic), 1.0).decision == Decision("doh_dot", "address", resolver)
    # Port 53 of the same address is plain DNS, and port 80 says nothing by address alone.
    query = network(src=client, dst=resolver) / UDP(sport=40302, dport=53) / DNS(rd=1, qd=DNSQR(qname="example.com"))
    decision = classifier.on_packet(bytes(query), 1.0).decision
    assert decision is None or decision.app == "dns"  # a query waits for its answer; never doh_dot
    web = network(src=client, dst=resolver) / TCP(sport=40303, dport=80, flags="S", seq=1)
    assert classifier.on_packet(bytes(web), 1.0).decision is None


def test_no_catalog_app_lists_overlapping_networks() -> None:
    """nft refuses a ruleset whose interval set holds a network inside another: the daemon would not start."""
    issues: list[object] = []
    overlapping = []
    for app in load_catalog(None, issues).values():
        for index, network in enumerate(app.networks):
            overlapping += [(app.id, str(network), str(other)) for other in app.networks[index + 1:]
                            if network.version == other.version and network.overlaps(other)]
    assert not issues and not overlapping
