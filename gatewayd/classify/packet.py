"""Parse an IP packet as NFQUEUE delivers it (no link layer) into a PacketInfo.

Addresses stay packed bytes (4 or 16 long): hashing and comparing bytes is far
cheaper than building ipaddress objects for every packet, and the engine only
converts the few addresses it reports.
"""

from __future__ import annotations

from struct import Struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

_IPV6_HOP_BY_HOP = 0
_IPV6_ROUTING = 43
_IPV6_FRAGMENT = 44
_IPV6_AH = 51
_IPV6_NO_NEXT = 59
_IPV6_DEST_OPTS = 60
_MAX_IPV6_EXTENSION_HEADERS = 8  # bounds the walk on hostile chains

_IPV4_HEAD = Struct("!BBHHHBBH4s4s")
_U16_PAIR = Struct("!HH")
_U16 = Struct("!H")
_TCP_HEAD = Struct("!HHIIBB")  # sport, dport, seq, ack, data offset byte, flags
# An Ethernet frame carries at least 46 bytes: a shorter IPv4 packet is padded with
# zeros, and some taps and middleboxes count that padding in the IP total length, so
# a bare ACK turns up with a few zero "payload" bytes at the sequence number where
# the real data starts (the request that follows would then look like garbage).
_MIN_ETHERNET_PAYLOAD = 46


class PacketInfo:
    """What the classifier needs from one packet.

    `l4_present` is False for non-first fragments: they carry no ports, so
    they cannot be put into a flow and must only be counted.
    """

    __slots__ = ("version", "proto", "src", "dst", "sport", "dport",
                 "tcp_flags", "tcp_seq", "payload", "l4_present", "fragmented")

    def __init__(self, version: int, proto: int, src: bytes, dst: bytes, sport: int, dport: int,
                 tcp_flags: int, tcp_seq: int, payload: bytes, l4_present: bool, fragmented: bool) -> None:
        self.version = version
        self.proto = proto
        self.src = src
        self.dst = dst
        self.sport = sport
        self.dport = dport
        self.tcp_flags = tcp_flags
        self.tcp_seq = tcp_seq
        self.payload = payload
        self.l4_present = l4_present
        self.fragmented = fragmented

    def __repr__(self) -> str:
        return (f"PacketInfo(v{self.version} proto={self.proto} {self.src.hex()}:{self.sport} -> "
                f"{self.dst.hex()}:{self.dport} flags={self.tcp_flags:#x} seq={self.tcp_seq} "
                f"payload={len(self.payload)}B l4={self.l4_present} frag={self.fragmented})")


def parse_packet(data: bytes) -> PacketInfo | None:
    """Parse one IPv4/IPv6 packet; None for anything truncated or malformed. Never raises."""
    try:
        if not data:
            return None
        version = data[0] >> 4
        if version == 4:
            return _parse_ipv4(data)
        if version == 6:
            return _parse_ipv6(data)
        return None
    except Exception:  # struct.error, IndexError, anything unforeseen: garbage in, None out
        return None


def _parse_ipv4(data: bytes) -> PacketInfo | None:
    if len(data) < 20:
        return None
    (version_ihl, _tos, total_length, _ident, flags_fragment, _ttl, proto, _checksum,
     src, dst) = _IPV4_HEAD.unpack_from(data, 0)
    header_length = (version_ihl & 0x0F) * 4
    if header_length < 20:
        return None
    if total_length == 0:  # GSO super-packets may carry 0; trust the buffer then
        total_length = len(data)
    if total_length < header_length or total_length > len(data):
        return None
    if flags_fragment & 0x1FFF:  # non-first fragment: no L4 header here
        return PacketInfo(4, proto, src, dst, 0, 0, 0, 0, b"", False, True)
    return _parse_l4(4, proto, src, dst, data, header_length, total_length, bool(flags_fragment & 0x2000))


def _parse_ipv6(data: bytes) -> PacketInfo | None:
    if len(data) < 40:
        return None
    payload_length = _U16.unpack_from(data, 4)[0]
    end = 40 + payload_length if payload_length else len(data)  # 0 = jumbogram / GSO
    if end > len(data):
        return None
    next_header = data[6]
    src = data[8:24]
    dst = data[24:40]
    offset = 40
    fragmented = False
    for _ in range(_MAX_IPV6_EXTENSION_HEADERS):
        if next_header in (_IPV6_HOP_BY_HOP, _IPV6_ROUTING, _IPV6_DEST_OPTS):
            if offset + 8 > end:
                return None
            following = data[offset]
            offset += (data[offset + 1] + 1) * 8
            next_header = following
        elif next_header == _IPV6_FRAGMENT:
            if offset + 8 > end:
                return None
            following = data[offset]
            fragment_field = _U16.unpack_from(data, offset + 2)[0]
            offset += 8
            next_header = following
            fragmented = True
            if fragment_field & 0xFFF8:  # non-first fragment: no L4 header here
                return PacketInfo(6, next_header, src, dst, 0, 0, 0, 0, b"", False, True)
        elif next_header == _IPV6_AH:
            if offset + 8 > end:
                return None
            following = data[offset]
            offset += (data[offset + 1] + 2) * 4
            next_header = following
        else:
            break
    else:
        return None  # too many extension headers: treat as hostile
    if offset > end:
        return None
    if next_header == _IPV6_NO_NEXT:
        return PacketInfo(6, next_header, src, dst, 0, 0, 0, 0, b"", True, fragmented)
    return _parse_l4(6, next_header, src, dst, data, offset, end, fragmented)


def _parse_l4(version: int, proto: int, src: bytes, dst: bytes, data: bytes,
              offset: int, end: int, fragmented: bool) -> PacketInfo | None:
    available = end - offset
    if proto == PROTO_TCP:
        if available < 20:
            return None
        sport, dport, seq, _ack, data_offset_byte, flags = _TCP_HEAD.unpack_from(data, offset)
        tcp_header_length = (data_offset_byte >> 4) * 4
        if tcp_header_length < 20 or tcp_header_length > available:
            return None
        payload = data[offset + tcp_header_length:end]
        if end <= _MIN_ETHERNET_PAYLOAD and payload and not flags & TCP_PSH and not any(payload):
            payload = b""  # link padding counted in the IP length (see _MIN_ETHERNET_PAYLOAD)
        return PacketInfo(version, proto, src, dst, sport, dport, flags, seq, payload, True, fragmented)
    if proto == PROTO_UDP:
        if available < 8:
            return None
        sport, dport = _U16_PAIR.unpack_from(data, offset)
        udp_length = _U16.unpack_from(data, offset + 4)[0]
        if fragmented:
            payload_end = end  # the UDP length covers the whole reassembled datagram
        elif udp_length < 8 or udp_length > available:
            if udp_length != 0:  # 0 is legal for IPv6 jumbograms / GSO; anything else is broken
                return None
            payload_end = end
        else:
            payload_end = offset + udp_length
        return PacketInfo(version, proto, src, dst, sport, dport, 0, 0,
                          data[offset + 8:payload_end], True, fragmented)
    # ICMP, GRE, ESP...: no ports; the engine still keys them by address pair.
    return PacketInfo(version, proto, src, dst, 0, 0, 0, 0, data[offset:end], True, fragmented)
