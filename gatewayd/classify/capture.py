"""Read pcap and pcapng files down to bare IP packets, for offline replay.

A reader of our own (about a hundred lines) rather than dpkt or scapy: the
offline `classify` command then needs nothing the daemon does not, and the
formats are small and stable. Link layers: Ethernet (with VLAN, QinQ, PPPoE,
MPLS), Linux cooked v1/v2, raw IP, BSD loopback. Frames of any other kind are
skipped; a truncated or corrupt file ends the iteration with CaptureError.
Tunnelled packets are unwrapped to the flows inside (encapsulation.py).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from gatewayd.classify.encapsulation import innermost_packet

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_VALUES = (12, 14, 101, 228, 229)  # raw IP (DLT and LINKTYPE spellings), IPv4, IPv6
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276

_ETHERTYPE_IPV4, _ETHERTYPE_IPV6 = 0x0800, 0x86DD
_VLAN_TYPES = (0x8100, 0x88A8, 0x9100)
_PPPOE_SESSION = 0x8864
_MPLS = (0x8847, 0x8848)
_PPP_IPV4, _PPP_IPV6 = 0x0021, 0x0057

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = 0x1A2B3C4D
_PCAPNG_IDB, _PCAPNG_OLD_PACKET, _PCAPNG_SPB, _PCAPNG_EPB = 1, 2, 3, 6
_MAX_BLOCK = 64 * 1024 * 1024


class CaptureError(Exception):
    """The file is not a capture we can read, or it is corrupt."""


def ip_of_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside one captured frame, or None for non-IP / unknown link layers."""
    try:
        if linktype == LINKTYPE_ETHERNET:
            return _after_ethertype(frame, struct.unpack_from("!H", frame, 12)[0], 14)
        if linktype == LINKTYPE_LINUX_SLL:
            return _after_ethertype(frame, struct.unpack_from("!H", frame, 14)[0], 16)
        if linktype == LINKTYPE_LINUX_SLL2:
            return _after_ethertype(frame, struct.unpack_from("!H", frame, 0)[0], 20)
        if linktype in LINKTYPE_RAW_VALUES:
            return frame
        if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            return frame[4:]
    except (struct.error, IndexError):
        return None
    return None


def _after_ethertype(frame: bytes, ethertype: int, offset: int) -> bytes | None:
    for _ in range(8):  # bounded: a frame of nothing but VLAN tags ends here
        if ethertype in (_ETHERTYPE_IPV4, _ETHERTYPE_IPV6):
            return frame[offset:]
        if ethertype in _VLAN_TYPES:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        elif ethertype == _PPPOE_SESSION:
            ppp_protocol = struct.unpack_from("!H", frame, offset + 6)[0]
            return frame[offset + 8:] if ppp_protocol in (_PPP_IPV4, _PPP_IPV6) else None
        elif ethertype in _MPLS:
            for _label in range(16):
                bottom = frame[offset + 2] & 0x01
                offset += 4
                if bottom:
                    break
            return frame[offset:] if frame[offset:offset + 1] and frame[offset] >> 4 in (4, 6) else None
        else:
            return None
    return None


def read_frames(path: str | Path) -> Iterator[tuple[float, int, bytes]]:
    """(timestamp, linktype, frame) for every packet record in a pcap or pcapng file."""
    with open(path, "rb") as handle:
        head = handle.read(4)
        if len(head) < 4:
            raise CaptureError("file too short to be a capture")
        if struct.unpack("<I", head)[0] == _PCAPNG_SHB:
            yield from _pcapng_frames(handle, head)
        else:
            yield from _pcap_frames(handle, head)


def read_ip_packets(path: str | Path) -> Iterator[tuple[float, bytes]]:
    """(timestamp, IP packet) for every IP frame in the capture, tunnels (6in4, GRE, VXLAN, CAPWAP) unwrapped.

    A packet byte for byte the same as the one just before it is the same packet captured
    twice (on both sides of a tunnel endpoint or a wireless controller, or by two mirror
    ports), not a retransmission, which carries a new IPv4 identification: it is dropped,
    or each copy would count against the flow's packet budget."""
    previous = b""
    for timestamp, linktype, frame in read_frames(path):
        packet = ip_of_frame(linktype, frame)
        if packet:
            packet = without_link_padding(innermost_packet(packet, _ip_of_ethernet))
            if packet != previous:
                yield timestamp, packet
            previous = packet


def without_link_padding(packet: bytes) -> bytes:
    """The packet cut to the length its IP header states.

    Ethernet pads frames to 60 bytes, so a bare TCP ACK arrives with zero bytes after it
    that are no payload; taken for data they put the flow's sequence numbers off by their
    length, and the request that follows no longer parses. A stated length of 0 (captures
    of segmentation offload) or beyond the frame leaves the packet as captured."""
    if len(packet) >= 20 and packet[0] >> 4 == 4:
        stated = struct.unpack_from("!H", packet, 2)[0]
    elif len(packet) >= 40 and packet[0] >> 4 == 6:
        payload_length = struct.unpack_from("!H", packet, 4)[0]
        stated = 40 + payload_length if payload_length else 0  # 0: a jumbogram, or offload
    else:
        return packet
    return packet[:stated] if 20 <= stated < len(packet) else packet


def _ip_of_ethernet(frame: bytes) -> bytes | None:
    return ip_of_frame(LINKTYPE_ETHERNET, frame)


def _pcap_frames(handle: BinaryIO, head: bytes) -> Iterator[tuple[float, int, bytes]]:
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head)[0]
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise CaptureError("not a pcap or pcapng file (unknown magic number)")
    divisor = 1e9 if magic == _PCAP_MAGIC_NS else 1e6
    rest = handle.read(20)
    if len(rest) < 20:
        raise CaptureError("truncated pcap file header")
    linktype = struct.unpack(order + "I", rest[16:20])[0] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:
        header = handle.read(16)
        if len(header) < 16:
            return  # end of file (a cut-off last header is common in truncated captures)
        seconds, fraction, captured, _original = record.unpack(header)
        if captured > _MAX_BLOCK:
            raise CaptureError(f"corrupt pcap record (captured length {captured})")
        frame = handle.read(captured)
        if len(frame) < captured:
            return
        yield seconds + fraction / divisor, linktype, frame


def _pcapng_frames(handle: BinaryIO, head: bytes) -> Iterator[tuple[float, int, bytes]]:
    order = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    block_type = struct.unpack("<I", head)[0]
    first = True
    while True:
        if not first:
            head = handle.read(4)
            if len(head) < 4:
                return
            block_type = struct.unpack(order + "I", head)[0]
        first = False
        raw_length = handle.read(4)
        if len(raw_length) < 4:
            return
        if block_type == _PCAPNG_SHB:
            magic = handle.read(4)
            if len(magic) < 4:
                return
            order = "<" if struct.unpack("<I", magic)[0] == _PCAPNG_BYTE_ORDER else ">"
            length = struct.unpack(order + "I", raw_length)[0]
            if length < 16 or length > _MAX_BLOCK:
                raise CaptureError("corrupt pcapng section header")
            handle.read(length - 12)
            interfaces = []  # interface ids restart in every section
            continue
        length = struct.unpack(order + "I", raw_length)[0]
        if length < 12 or length > _MAX_BLOCK or length % 4:
            raise CaptureError(f"corrupt pcapng block (length {length})")
        body = handle.read(length - 8)
        if len(body) < length - 8:
            return
        body = body[:-4]  # trailing copy of the length
        if block_type == _PCAPNG_IDB and len(body) >= 8:
            linktype = struct.unpack_from(order + "H", body, 0)[0]
            interfaces.append((linktype, _timestamp_unit(body[8:], order)))
        elif block_type in (_PCAPNG_EPB, _PCAPNG_OLD_PACKET) and len(body) >= 20:
            if block_type == _PCAPNG_EPB:
                interface, high, low, captured = struct.unpack_from(order + "IIII", body, 0)
            else:
                interface, _drops, high, low, captured = struct.unpack_from(order + "HHIII", body, 0)
            if interface < len(interfaces):
                linktype, unit = interfaces[interface]
                yield ((high << 32) | low) * unit, linktype, body[20:20 + captured]
        elif block_type == _PCAPNG_SPB and len(body) >= 4 and interfaces:
            original = struct.unpack_from(order + "I", body, 0)[0]
            yield 0.0, interfaces[0][0], body[4:4 + original]


def _timestamp_unit(options: bytes, order: str) -> float:
    """Seconds per timestamp tick from the if_tsresol option (default microseconds)."""
    position = 0
    while position + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, position)
        if code == 0:
            break
        if code == 9 and length >= 1:
            value = options[position + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        position += 4 + ((length + 3) & ~3)
    return 1e-6
