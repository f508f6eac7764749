"""Payload signatures of peer-to-peer and P2P-streaming protocols (Gnutella, Xunlei, PPLive, eDonkey UDP).

Same contract as signatures.py: `match(payload, direction_is_client) -> bool`
on one packet, strict enough that a hit on an otherwise unknown flow is
trustworthy. Sources are the public protocol descriptions (Gnutella 0.6 RFC
draft and GDF wiki, Gnutella2 UDP transceiver spec, eMule's protocol
documentation) and, for the undocumented Chinese clients, the packet shapes
that open-source classifiers (nDPI, l7-filter) publish.
"""

from __future__ import annotations

from struct import Struct

_U32_LE = Struct("<I")

# --- Gnutella ----------------------------------------------------------------------------

_GNUTELLA_TCP_PREFIXES = (
    b"GNUTELLA CONNECT/", b"GNUTELLA/0.6 ", b"GNUTELLA OK",
    b"GET /uri-res/N2R?urn:sha1:", b"GET /uri-res/N2X?urn:", b"GET /gnutella/", b"HEAD /gnutella/",
    b"GET /get/", b"GIV ",
)
# Descriptor payload types of the 23-byte Gnutella header (ping, pong, bye, QRP, vendor
# messages, push, RUDP, DHT, query, query hit).
_GNUTELLA_FUNCTIONS = frozenset((0x00, 0x01, 0x02, 0x30, 0x31, 0x32, 0x40, 0x41, 0x44, 0x80, 0x81))
_GNUTELLA_MAX_TTL = 16


def gnutella(payload: bytes, direction_is_client: bool) -> bool:
    """Gnutella over TCP: the text handshake or the HTTP-like file requests.

    Binary descriptors on TCP only follow that handshake, which decides the flow
    first; alone, their shape (a GUID and a length) is common to unrelated binary
    protocols (Modbus/UMAS matched it), so on TCP only the text is trusted."""
    if payload.startswith(_GNUTELLA_TCP_PREFIXES):
        # /get/ is generic HTTP: only with Gnutella's own X-headers in the same request.
        return not payload.startswith(b"GET /get/") or b"\r\nX-Gnutella-" in payload
    return False


def gnutella_udp(payload: bytes, direction_is_client: bool) -> bool:
    """Gnutella over UDP: Gnutella2's "GND" transceiver header or a 0.6 descriptor (ping, pong, query...)."""
    if payload.startswith(b"GND") and len(payload) >= 8:
        return _gnutella2_udp(payload)
    return _gnutella_descriptor(payload)


def _gnutella_descriptor(payload: bytes) -> bool:
    """16-byte GUID, type, TTL, hops, little-endian payload length covering the rest exactly."""
    if len(payload) < 23 or payload[16] not in _GNUTELLA_FUNCTIONS:
        return False
    ttl, hops = payload[17], payload[18]
    if ttl + hops > _GNUTELLA_MAX_TTL or payload[:16] == bytes(16):
        return False
    declared: int = _U32_LE.unpack_from(payload, 19)[0]
    return declared == len(payload) - 23


def _gnutella2_udp(payload: bytes) -> bool:
    """G2 UDP transceiver: "GND", flags (clients use more than the two documented bits), sequence,
    part number >= 1, part count >= part (0 only for acknowledgements)."""
    flags, part, count = payload[3], payload[6], payload[7]
    return flags < 0x20 and part >= 1 and (count == 0 or part <= count)


# --- Xunlei / Thunder -----------------------------------------------------------------------

def _thunder_header(data: bytes) -> bool:
    # Thunder's binary messages start with a protocol version 0x30..0x3f as a little-endian u32.
    return len(data) > 8 and 0x30 <= data[0] <= 0x3F and data[1:4] == b"\x00\x00\x00"


def thunder(payload: bytes, direction_is_client: bool) -> bool:
    """Xunlei hub/tracker traffic: an HTTP POST / whose octet-stream body is a Thunder message."""
    if not payload.startswith(b"POST / HTTP/1.1\r\n"):
        return False
    head_end = payload.find(b"\r\n\r\n")
    if head_end < 0:
        return False
    head = payload[:head_end].lower()
    return b"content-type: application/octet-stream" in head and _thunder_header(payload[head_end + 4:])


def thunder_binary(payload: bytes, direction_is_client: bool) -> bool:
    """Half of Xunlei's peer exchange: the version header alone is too weak, so the
    engine decides only when both directions showed it (see TWO_WAY_SIGNATURES)."""
    return _thunder_header(payload)


# --- PPLive / PPTV -------------------------------------------------------------------------

def pplive(payload: bytes, direction_is_client: bool) -> bool:
    """PPLive/PPTV UDP peer protocol: 0xe9 0x03, a command, a 0/1 flag, then the 98 ab 01 02 tag."""
    return (len(payload) >= 8 and payload[0] == 0xE9 and payload[1] == 0x03
            and payload[3] in (0x00, 0x01) and payload[4:8] == b"\x98\xab\x01\x02")


# PPStream (PPS), the P2P video engine of iQIYI's clients: its UDP peer messages name the
# protocol in a NUL-terminated field of their fixed header.
_PPSTREAM_NAME = b"PPStream\x00"
_PPSTREAM_HEADER_REACH = 256
_PPSTREAM_MIN_SIZE = 64


def ppstream(payload: bytes, direction_is_client: bool) -> bool:
    """iQIYI/PPS peer datagram: the protocol name within its header, in a datagram of a peer message's size."""
    return len(payload) >= _PPSTREAM_MIN_SIZE and _PPSTREAM_NAME in payload[:_PPSTREAM_HEADER_REACH]


# --- eDonkey / eMule over UDP (Kad and server UDP) ---------------------------------------

_KAD_PROTOCOLS = (0xE4, 0xE5)  # Kademlia, Kademlia packed
_KAD_OPCODES = frozenset((0x01, 0x09, 0x11, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31, 0x38, 0x39,
                          0x40, 0x41, 0x43, 0x44, 0x48, 0x49, 0x50, 0x58, 0x59, 0x60, 0x61))


def edonkey_udp(payload: bytes, direction_is_client: bool) -> bool:
    """Kad (0xe4/0xe5 + a Kad2 opcode) and eDonkey server UDP (0xe3 + a status/search opcode)."""
    if len(payload) < 2:
        return False
    if payload[0] in _KAD_PROTOCOLS:
        return payload[1] in _KAD_OPCODES and len(payload) >= 18
    if payload[0] == 0xE3:
        return payload[1] in (0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0xA2, 0xA3) and len(payload) >= 6
    return False
