"""Unwrap tunnelled packets in a capture to the packet the applications sent.

Offline replay only (`gatewayd classify --pcap`): a capture taken on a tunnel's
transit link (6in4 to a tunnel broker, GRE between sites, VXLAN between
hypervisors) holds the office's flows inside the tunnel's packets; without
unwrapping, every one of them would be one opaque flow between the two tunnel
endpoints. The daemon never calls this: on the gateway, a tunnel it forwards is
the tunnel's own flow.

Unwrapped: IP in IP (IPv4 or IPv6 inside IPv4 or IPv6: RFC 2003, RFC 4213),
GRE version 0 carrying IP or Ethernet (RFC 2784/2890), VXLAN on its IANA port
(RFC 7348), CAPWAP data between a wireless controller and its access points
(RFC 5415 on its IANA port, carrying 802.3 frames or native 802.11 data frames,
RFC 5416; Cisco controllers send the 802.11 frame control byte-swapped, so both
orders are tried and only one that yields LLC/SNAP-framed IP counts).
PPTP's enhanced GRE (version 1) stays as it is: its PPP payload is
encrypted, and the pptp signature names it. Outer fragments are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

_U16 = Struct("!H")
_U16_PAIR = Struct("!HH")

_PROTO_IPV4_IN_IP, _PROTO_IPV6_IN_IP, _PROTO_GRE, _PROTO_UDP = 4, 41, 47, 17
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6, _ETHERTYPE_TRANSPARENT_ETHERNET = 0x0800, 0x86DD, 0x6558
_VXLAN_PORT = 4789
_CAPWAP_DATA_PORT = 5247
_CAPWAP_WBID_IEEE_80211 = 1
_LLC_SNAP = b"\xaa\xaa\x03\x00\x00\x00"
_VXLAN_FLAG_VALID_VNI = 0x08
_GRE_CHECKSUM, _GRE_ROUTING, _GRE_KEY, _GRE_SEQUENCE = 0x8000, 0x4000, 0x2000, 0x1000
_MAX_DEPTH = 4  # tunnels in tunnels, bounded

EthernetReader = Callable[[bytes], "bytes | None"]


def innermost_packet(packet: bytes, ip_of_ethernet: EthernetReader) -> bytes:
    """The packet inside the tunnel(s) `packet` carries, or `packet` itself when it carries none.

    `ip_of_ethernet` finds the IP packet in an Ethernet frame (GRE and VXLAN may carry
    whole frames); the capture reader passes its own, so this module needs no link layers."""
    for _ in range(_MAX_DEPTH):
        try:
            inner = _inner_packet(packet, ip_of_ethernet)
        except (IndexError, ValueError):
            return packet
        if inner is None or not _looks_like_ip(inner):
            return packet
        packet = inner
    return packet


def _inner_packet(packet: bytes, ip_of_ethernet: EthernetReader) -> bytes | None:
    version = packet[0] >> 4
    if version == 4:
        header_length = (packet[0] & 0x0F) * 4
        more_fragments, fragment_offset = packet[6] & 0x20, _U16.unpack_from(packet, 6)[0] & 0x1FFF
        if header_length < 20 or more_fragments or fragment_offset:
            return None
        total_length = _U16.unpack_from(packet, 2)[0]
        return _payload_of(packet[9], packet[header_length:total_length], ip_of_ethernet)
    if version == 6 and len(packet) >= 40:
        # Only a tunnel right after the fixed header; extension headers in front are rare here.
        payload_length = _U16.unpack_from(packet, 4)[0]
        return _payload_of(packet[6], packet[40:40 + payload_length], ip_of_ethernet)
    return None


def _payload_of(protocol: int, payload: bytes, ip_of_ethernet: EthernetReader) -> bytes | None:
    if protocol in (_PROTO_IPV4_IN_IP, _PROTO_IPV6_IN_IP):
        return payload
    if protocol == _PROTO_GRE:
        return _gre_payload(payload, ip_of_ethernet)
    if protocol == _PROTO_UDP and len(payload) >= 16 and _U16.unpack_from(payload, 2)[0] == _VXLAN_PORT:
        vxlan = payload[8:]
        # RFC 7348: the I flag must be set; the other bits are reserved and ignored on receipt
        # (scapy and VXLAN-GPE senders set some), so only the Ethernet frame inside must parse.
        if vxlan[0] & _VXLAN_FLAG_VALID_VNI:
            return ip_of_ethernet(vxlan[8:])
    # The access point sends to the controller's data port, the controller answers from it.
    if protocol == _PROTO_UDP and len(payload) >= 16 and _CAPWAP_DATA_PORT in _U16_PAIR.unpack_from(payload, 0):
        return _capwap_payload(payload[8:], ip_of_ethernet)
    return None


def _capwap_payload(capwap: bytes, ip_of_ethernet: EthernetReader) -> bytes | None:
    """RFC 5415 4.3: preamble (version 0, type 0: not DTLS), HLEN in 4-byte words, then the frame."""
    if capwap[0] != 0:
        return None  # another version, or a DTLS-protected packet
    bits = int.from_bytes(capwap[1:4], "big")
    header_length = (bits >> 19) * 4
    wireless_binding = (bits >> 9) & 0x1F
    native_frame, fragment = bits & 0x100, bits & 0x80
    if header_length < 8 or fragment:
        return None
    frame = capwap[header_length:]
    if not native_frame:
        return ip_of_ethernet(frame)  # an IEEE 802.3 frame
    if wireless_binding == _CAPWAP_WBID_IEEE_80211:
        return _ieee80211_data(frame) or _ieee80211_data(frame[1::-1] + frame[2:])
    return None


def _ieee80211_data(frame: bytes) -> bytes | None:
    """The IP packet in an unprotected 802.11 data frame (LLC/SNAP), or None."""
    control, flags = frame[0], frame[1]
    if control & 0x0C != 0x08 or control & 0x03 or flags & 0x40:  # not data, version != 0, or protected
        return None
    header_length = 24 + (6 if flags & 0x03 == 0x03 else 0) + (2 if control & 0x80 else 0)  # 4 addresses, QoS
    snap = frame[header_length:header_length + 8]
    if len(snap) < 8 or snap[:6] != _LLC_SNAP or _U16.unpack_from(snap, 6)[0] not in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return None
    return frame[header_length + 8:]


def _gre_payload(gre: bytes, ip_of_ethernet: EthernetReader) -> bytes | None:
    flags, ethertype = _U16.unpack_from(gre, 0)[0], _U16.unpack_from(gre, 2)[0]
    if flags & 0x0007 or flags & _GRE_ROUTING:  # version 0 only, no source routing (RFC 1701 leftovers)
        return None
    offset = 4 + 4 * sum(1 for bit in (_GRE_CHECKSUM, _GRE_KEY, _GRE_SEQUENCE) if flags & bit)
    if ethertype in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
        return gre[offset:]
    if ethertype == _ETHERTYPE_TRANSPARENT_ETHERNET:
        return ip_of_ethernet(gre[offset:])
    return None


def _looks_like_ip(packet: bytes) -> bool:
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        return (packet[0] & 0x0F) >= 5
    return len(packet) >= 40 and packet[0] >> 4 == 6
