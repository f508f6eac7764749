"""Unwrap tunnelled packets in a capture to the packet the applications sent.

Offline replay only (`gatewayd classify --pcap`): a capture taken on a tunnel's
transit link (6in4 to a tunnel broker, GRE between sites, VXLAN between
hypervisors) holds the office's flows inside the tunnel's packets; without
unwrapping, every one of them would be one opaque flow between the two tunnel
endpoints. The daemon never calls this: on the gateway, a tunnel it forwards is
the tunnel's own flow.

Unwrapped: IP in IP (IPv4 or IPv6 inside IPv4 or IPv6: RFC 2003, RFC 4213),
GRE version 0 carrying IP or Ethernet (RFC 2784/2890), VXLAN on its IANA port
(RFC 7348). PPTP's enhanced GRE (version 1) stays as it is: its PPP payload is
encrypted, and the pptp signature names it. Outer fragments are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct

_U16 = Struct("!H")

_PROTO_IPV4_IN_IP, _PROTO_IPV6_IN_IP, _PROTO_GRE, _PROTO_UDP = 4, 41, 47, 17
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6, _ETHERTYPE_TRANSPARENT_ETHERNET = 0x0800, 0x86DD, 0x6558
_VXLAN_PORT = 4789
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
    return None


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
