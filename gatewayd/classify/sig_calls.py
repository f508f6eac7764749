"""Calls: what a STUN/TURN message says about the app behind it, and Agora's SD-RTN.

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


def stun_attributes(payload: bytes) -> list[tuple[int, bytes]] | None:
    """(type, value) of each attribute of a STUN message (magic cookie checked), or None if it is not one.

    A value running past the message ends the walk: the attributes before it still count.
    """
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
