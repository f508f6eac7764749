"""Offline replay unwraps tunnels (IP in IP, GRE, VXLAN, CAPWAP) to the flows inside; PPTP's GRE and fragments stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scapy.all import GRE, IP, TCP, UDP, VXLAN, Ether, IPv6, Raw, wrpcap

from gatewayd.classify.capture import LINKTYPE_ETHERNET, ip_of_frame, read_ip_packets
from gatewayd.classify.encapsulation import innermost_packet

INNER_V4 = IP(src="192.0.2.10", dst="203.0.113.80") / TCP(sport=40000, dport=443, flags="S")
INNER_V6 = IPv6(src="2001:db8:1::10", dst="2001:db8:2::80") / TCP(sport=40001, dport=993, flags="S")
OUTER_V4 = IP(src="198.51.100.1", dst="198.51.100.2")
OUTER_V6 = IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2")
INNER_ETHERNET = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / INNER_V4


def capwap(frame: bytes, native_80211: bool, preamble: int = 0, fragment: bool = False) -> bytes:
    """RFC 5415 4.3 CAPWAP data header (HLEN 2 words, RID 0, WBID 1 = IEEE 802.11), then the frame."""
    bits = (2 << 19) | (1 << 9) | (0x100 if native_80211 else 0) | (0x80 if fragment else 0)
    return bytes((preamble,)) + bits.to_bytes(3, "big") + bytes(4) + frame


def dot11_data(packet: bytes, qos: bool = False, protected: bool = False, swapped: bool = False) -> bytes:
    """An 802.11 data frame to the distribution system (To DS), LLC/SNAP-framed IPv4 (RFC 5416)."""
    control = bytes((0x88 if qos else 0x08, 0x01 | (0x40 if protected else 0)))
    if swapped:  # Cisco controllers put the frame control's two bytes the other way round
        control = control[::-1]
    header = control + bytes(2) + bytes.fromhex("020000000002020000000001020000000002") + bytes(2)
    return header + (bytes(2) if qos else b"") + b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + packet


def ethernet_ip(frame: bytes) -> bytes | None:
    return ip_of_frame(LINKTYPE_ETHERNET, frame)


@pytest.mark.parametrize("tunnelled,inner", [
    (OUTER_V4 / INNER_V6, INNER_V6),                                  # 6in4 (protocol 41)
    (OUTER_V6 / INNER_V4, INNER_V4),                                  # 4in6 (next header 4)
    (OUTER_V4 / INNER_V4, INNER_V4),                                  # IPIP
    (OUTER_V4 / GRE(proto=0x0800) / INNER_V4, INNER_V4),              # GRE
    (OUTER_V4 / GRE(proto=0x86DD, key_present=1, key=7, seqnum_present=1, sequence_number=3) / INNER_V6, INNER_V6),
    (OUTER_V4 / GRE(proto=0x6558) / INNER_ETHERNET, INNER_V4),        # GRE carrying Ethernet (gretap)
    (OUTER_V4 / UDP(sport=50000, dport=4789) / VXLAN(vni=42) / INNER_ETHERNET, INNER_V4),
    (OUTER_V6 / GRE(proto=0x0800) / (OUTER_V4 / INNER_V6), INNER_V6),  # a tunnel in a tunnel
    # CAPWAP data from an access point, and from the controller's data port back to it
    (OUTER_V4 / UDP(sport=41264, dport=5247) / Raw(capwap(bytes(INNER_ETHERNET), native_80211=False)), INNER_V4),
    (OUTER_V4 / UDP(sport=41264, dport=5247) / Raw(capwap(dot11_data(bytes(INNER_V4)), native_80211=True)), INNER_V4),
    (OUTER_V4 / UDP(sport=5247, dport=41264) / Raw(capwap(dot11_data(bytes(INNER_V4), qos=True), True)), INNER_V4),
    (OUTER_V4 / UDP(sport=41264, dport=5247) / Raw(capwap(dot11_data(bytes(INNER_V4), swapped=True), True)), INNER_V4),
])
def test_tunnels_are_unwrapped_to_the_inner_packet(tunnelled: Any, inner: Any) -> None:
    assert innermost_packet(bytes(tunnelled), ethernet_ip) == bytes(inner)


def test_what_is_no_tunnel_stays_as_it_is() -> None:
    pptp_gre = bytes(OUTER_V4 / Raw(b"\x30\x81\x88\x0b\x00\x10\x00\x00" + bytes(16)))
    pptp_gre = pptp_gre[:9] + b"\x2f" + pptp_gre[10:]  # enhanced GRE (version 1) of PPTP: encrypted PPP inside
    fragment = bytes(IP(src="198.51.100.1", dst="198.51.100.2", flags="MF", proto=4) / Raw(bytes(INNER_V4)))
    other_udp = bytes(OUTER_V4 / UDP(sport=50000, dport=4790) / VXLAN(vni=42) / INNER_ETHERNET)
    not_ip_inside = bytes(OUTER_V4 / GRE(proto=0x0800) / Raw(b"\x00" * 30))
    capwap_port = OUTER_V4 / UDP(sport=41264, dport=5247)
    capwap_left_alone = [
        bytes(capwap_port / Raw(capwap(bytes(INNER_ETHERNET), False, preamble=0x01))),  # DTLS-protected data
        bytes(capwap_port / Raw(capwap(bytes(INNER_ETHERNET), False, fragment=True))),  # a fragment of a frame
        bytes(capwap_port / Raw(capwap(dot11_data(bytes(INNER_V4), protected=True), True))),  # encrypted 802.11
        bytes(capwap_port / Raw(capwap(dot11_data(b"")[:-1], True))),  # cut inside the LLC/SNAP header
    ]
    for packet in (bytes(INNER_V4), bytes(INNER_V6), pptp_gre, fragment, other_udp, not_ip_inside,
                   bytes(OUTER_V4 / GRE(proto=0x0800)), *capwap_left_alone):
        assert innermost_packet(packet, ethernet_ip) == packet


def test_capture_reader_yields_the_inner_flows(tmp_path: Path) -> None:
    capture = tmp_path / "6in4.pcap"
    wrpcap(str(capture), [Ether() / OUTER_V4 / INNER_V6, Ether() / INNER_V4])
    assert [packet for _, packet in read_ip_packets(capture)] == [bytes(INNER_V6), bytes(INNER_V4)]


def test_capture_reader_drops_ethernet_padding(tmp_path: Path) -> None:
    ack = IP(src="192.0.2.10", dst="203.0.113.80") / TCP(sport=40000, dport=80, flags="A")
    padded = Ether(type=0x0800) / Raw(bytes(ack) + b"\x00" * 6)  # a 54-byte frame padded to Ethernet's 60
    offload = bytearray(bytes(ack))
    offload[2:4] = b"\x00\x00"  # segmentation offload captures state no length: keep all
    capture = tmp_path / "padded.pcap"
    wrpcap(str(capture), [padded, Ether(type=0x0800) / Raw(bytes(offload) + b"\x00" * 6)])
    packets = [packet for _, packet in read_ip_packets(capture)]
    assert packets[0] == bytes(ack)
    assert len(packets[1]) == len(ack) + 6


def test_capture_reader_drops_a_packet_captured_twice_in_a_row(tmp_path: Path) -> None:
    # The same packet seen on both sides of a wireless controller; a retransmission has a new IP id.
    first = IP(src="192.0.2.10", dst="203.0.113.80", id=7) / TCP(sport=40000, dport=443, flags="S")
    retransmitted = IP(src="192.0.2.10", dst="203.0.113.80", id=8) / TCP(sport=40000, dport=443, flags="S")
    capture = tmp_path / "twice.pcap"
    wrpcap(str(capture), [Ether() / first, Ether() / first, Ether() / retransmitted, Ether() / first])
    assert [packet for _, packet in read_ip_packets(capture)] == [bytes(first), bytes(retransmitted), bytes(first)]
