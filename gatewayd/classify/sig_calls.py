"""Calls: what a STUN/TURN message says about the app behind it, Agora's SD-RTN, Zoom's media.

Same contract as signatures.py for the named signatures. STUN (RFC 8489) and
TURN (RFC 8656) are generic carriers; a message names its app only through
  * vendor attributes outside the IETF's list: Zoom's 0x0101/0x0103 and
    Google's 0xFF03 (as nDPI's STUN dissector documents them), Microsoft's
    MS-TURN/MS-ICE2 and WhatsApp's (in signatures.py);
  * the REALM of a TURN server (its operator's domain, e.g. a realm under
    signal.org) and the SOFTWARE the agent names itself with: free text that
    the engine matches against the catalog, never against a list of its own.
Agora's SD-RTN (the network carrying many Chinese apps' calls) opens with a
UDP message that names its server: byte 6 is 0x21, bytes 12-15 are "\\x04SNI",
then a 16-bit name length, a zero byte and the host name.
"""

from __future__ import annotations

import re
from struct import Struct

_U16 = Struct("!H")
_U32 = Struct("!I")
STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"
STUN_HEADER_SIZE = 20
_MAX_ATTRIBUTES = 32
STUN_REALM = 0x0014
STUN_SOFTWARE = 0x8022
_ZOOM_ATTRIBUTES = frozenset((0x0101, 0x0103))
_GOOGLE_CALL_ATTRIBUTE = 0xFF03
_MAX_NAME = 253
_HOST_NAME = re.compile(rb"[A-Za-z0-9]([A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}\.?")
_PRODUCT = re.compile(r"[a-z][a-z0-9]{1,31}")


def unframed_stun(payload: bytes) -> bytes:
    """The STUN message inside RFC 4571 framing (ICE over TCP, RFC 6544: a 16-bit length before each
    message), the first one when several share a segment; any other payload as it is."""
    if len(payload) >= 2 + STUN_HEADER_SIZE and payload[6:10] == STUN_MAGIC_COOKIE and not payload[2] & 0xC0:
        framed = _U16.unpack_from(payload, 0)[0]
        if framed == _U16.unpack_from(payload, 4)[0] + STUN_HEADER_SIZE and 2 + framed <= len(payload):
            return payload[2:2 + framed]
    return payload


def stun_attributes(payload: bytes) -> list[tuple[int, bytes]] | None:
    """(type, value) of each attribute of a STUN message (magic cookie checked), or None if it is not one.

    The message may come in RFC 4571 framing (TCP). A value running past the message ends the
    walk: the attributes before it still count.
    """
    payload = unframed_stun(payload)
    if len(payload) < STUN_HEADER_SIZE or payload[0] & 0xC0 or payload[4:8] != STUN_MAGIC_COOKIE:
        return None
    attributes: list[tuple[int, bytes]] = []
    offset = STUN_HEADER_SIZE
    while offset + 4 <= len(payload) and len(attributes) < _MAX_ATTRIBUTES:
        kind, length = _U16.unpack_from(payload, offset)[0], _U16.unpack_from(payload, offset + 2)[0]
        if offset + 4 + length > len(payload):
            break
        attributes.append((kind, payload[offset + 4:offset + 4 + length]))
        offset += 4 + ((length + 3) & ~3)
    return attributes


def stun_zoom(payload: bytes, direction_is_client: bool) -> bool:
    attributes = stun_attributes(payload)
    return attributes is not None and any(kind in _ZOOM_ATTRIBUTES for kind, _ in attributes)


def stun_googlecall(payload: bytes, direction_is_client: bool) -> bool:
    attributes = stun_attributes(payload)
    return attributes is not None and any(kind == _GOOGLE_CALL_ATTRIBUTE for kind, _ in attributes)


def stun_names(payload: bytes) -> tuple[str | None, str | None]:
    """(REALM if it is a host name, SOFTWARE's product word) of a STUN message; None where absent."""
    attributes = stun_attributes(payload)
    if not attributes:
        return None, None
    realm = software = None
    for kind, value in attributes:
        if kind == STUN_REALM and realm is None and len(value) <= _MAX_NAME and _HOST_NAME.fullmatch(value):
            realm = value.decode("ascii").rstrip(".").lower()
        elif kind == STUN_SOFTWARE and software is None:
            software = software_product(value)
    return realm, software


def software_product(value: bytes) -> str | None:
    """The product word a SOFTWARE text starts with ("Zoom/5.1 (linux)" -> "zoom"), lowercased."""
    text = value[:64].decode("utf-8", "replace").lower()
    match = _PRODUCT.match(text)
    if match is None:
        return None
    following = text[match.end():match.end() + 1]
    return match.group() if following in ("", " ", "/", "-", "_", ";", "(") else None


def sd_rtn(payload: bytes, direction_is_client: bool) -> bool:
    """Agora SD-RTN's opening message: the "\\x04SNI" field and a whole host name after it."""
    if len(payload) < 20 or payload[6] != 0x21 or payload[12:16] != b"\x04SNI" or payload[18] != 0:
        return False
    length = _U16.unpack_from(payload, 16)[0]
    if not 4 <= length <= _MAX_NAME or 19 + length > len(payload):
        return False
    return _HOST_NAME.fullmatch(payload[19:19 + length]) is not None


# --- Zoom's media encapsulation (Zoom's multimedia routers, udp/8801-8810) --------------------------
# As measured and documented by Michel et al., "Enabling Passive Measurement of Zoom Performance in
# Production Networks" (IMC 2022; Princeton's zoom-analysis), and read the same way by nDPI's Zoom
# dissector: a media datagram between a client and Zoom's server starts with an 8-byte "SFU"
# header (type 5 for media, a 16-bit sequence, 32 bits, then the direction: 0 towards Zoom, 4 from
# Zoom), then the "media encapsulation" whose first byte is its type, and at a fixed offset per
# type the RTP packet (audio, video, screen share) or RTCP packet it carries. The RTP/RTCP header
# must be well-formed there: version 2, an RTP payload type outside RTCP's range (RFC 5761), or an
# RTCP packet type with a length that fits.
_ZOOM_SFU_MEDIA = 0x05
_ZOOM_SFU_HEADER_SIZE = 8
_ZOOM_TOWARDS_ZOOM, _ZOOM_FROM_ZOOM = 0x00, 0x04
_ZOOM_MEDIA_HEADER_SIZE = 15
_ZOOM_RTP_OFFSETS = {13: 27, 30: 20, 15: 19, 16: 24}  # screen share, screen share, audio, video
_ZOOM_RTCP_OFFSETS = {33: 16, 34: 16, 35: 16}
_RTP_HEADER_SIZE = 12
_RTCP_HEADER_SIZE = 8
_RTCP_PACKET_TYPES = range(200, 208)  # SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR
_RTCP_RANGE_OF_RTP_TYPES = range(64, 96)  # RFC 5761 section 4: RTP avoids them, RTCP's types map there


def zoom_media(payload: bytes, direction_is_client: bool) -> bool:
    """One direction of a Zoom media flow (the engine wants both: TWO_WAY_SIGNATURES)."""
    if len(payload) <= _ZOOM_SFU_HEADER_SIZE + _ZOOM_MEDIA_HEADER_SIZE or payload[0] != _ZOOM_SFU_MEDIA:
        return False
    if payload[7] != (_ZOOM_TOWARDS_ZOOM if direction_is_client else _ZOOM_FROM_ZOOM):
        return False
    media = payload[_ZOOM_SFU_HEADER_SIZE:]
    offset = _ZOOM_RTP_OFFSETS.get(media[0])
    if offset is not None:
        return len(media) >= offset + _RTP_HEADER_SIZE and is_rtp(media[offset:])
    offset = _ZOOM_RTCP_OFFSETS.get(media[0])
    return offset is not None and is_rtcp(media[offset:])


def is_rtp(packet: bytes) -> bool:
    """An RTP header (RFC 3550): version 2 and a payload type RTP may use beside RTCP."""
    return (len(packet) >= _RTP_HEADER_SIZE and packet[0] >> 6 == 2
            and packet[1] & 0x7F not in _RTCP_RANGE_OF_RTP_TYPES)


def is_rtcp(packet: bytes) -> bool:
    """An RTCP packet header (RFC 3550 6.4): version 2, a packet type, and a length (in 32-bit words
    less one) that fits in what follows."""
    if len(packet) < _RTCP_HEADER_SIZE or packet[0] >> 6 != 2 or packet[1] not in _RTCP_PACKET_TYPES:
        return False
    words: int = _U16.unpack_from(packet, 2)[0]
    return (words + 1) * 4 <= len(packet)


# Zoom's peer-to-peer calls carry no SFU header; the two clients open with a media-encapsulation
# message of type 0x1F (bytes 1F 02 01), a 24-byte head, then a list of 32-bit-length-prefixed
# values, the first the sender's IP address as text and the second an identifier, and four zero
# bytes last (nDPI's Zoom dissector reads it so). The lengths must add up to the datagram exactly
# and the address must read as one.
_ZOOM_P2P_OPENING = b"\x1f\x02\x01"
_ZOOM_P2P_HEAD_SIZE = 24
_ZOOM_P2P_MAX_VALUE = 256
_ADDRESS_TEXT = re.compile(rb"[0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4}(:[0-9A-Fa-f]{0,4}){2,7}")


def zoom_p2p(payload: bytes, direction_is_client: bool) -> bool:
    if len(payload) <= _ZOOM_P2P_HEAD_SIZE + 12 or not payload.startswith(_ZOOM_P2P_OPENING):
        return False
    if payload[-4:] != b"\x00\x00\x00\x00":
        return False
    address_length = _U32.unpack_from(payload, _ZOOM_P2P_HEAD_SIZE)[0]
    if not 7 <= address_length <= 39:
        return False
    identifier_at = _ZOOM_P2P_HEAD_SIZE + 4 + address_length
    if identifier_at + 4 > len(payload):
        return False
    identifier_length = _U32.unpack_from(payload, identifier_at)[0]
    if not 1 <= identifier_length <= _ZOOM_P2P_MAX_VALUE or identifier_at + 4 + identifier_length + 4 != len(payload):
        return False
    address = payload[_ZOOM_P2P_HEAD_SIZE + 4:identifier_at]
    return _ADDRESS_TEXT.fullmatch(address) is not None
