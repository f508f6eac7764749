"""Payload signatures of instant-messaging apps' own binary protocols (QQ's OICQ, WeChat's mmtls, AliWangWang).

Same contract as signatures.py. Written from the protocols' published
descriptions (Wireshark's OICQ dissector, the LumaQQ protocol notes), never
from one capture's bytes: a signature fires on flows with no other evidence,
so each insists on every field the format fixes.
"""

from __future__ import annotations

from struct import Struct

_U16 = Struct("!H")

# --- QQ (OICQ) -------------------------------------------------------------------------------
# A QQ packet: STX 0x02, client version (16 bits), command (16 bits), sequence (16 bits),
# then (client to server) the QQ number and the encrypted body, and ETX 0x03 last.
# Over UDP (server port 8000) the packet is the datagram; over TCP (80, 443, 8000) it
# is preceded by a 16-bit length. The commands are the documented ones.
_OICQ_STX, _OICQ_ETX = 0x02, 0x03
_OICQ_COMMANDS = frozenset((
    0x0001, 0x0002, 0x0004, 0x0005, 0x0006, 0x0009, 0x000A, 0x000B, 0x000D, 0x0012, 0x0016, 0x0017,
    0x0018, 0x001A, 0x001C, 0x001D, 0x0021, 0x0022, 0x0026, 0x0027, 0x0029, 0x0030, 0x0031, 0x003C,
    0x003D, 0x003E, 0x0058, 0x005C, 0x0062, 0x0065, 0x0067, 0x0080, 0x0081, 0x00B5,
))
_OICQ_MIN_SIZE = 1 + 2 + 2 + 2 + 4 + 1  # STX, version, command, sequence, QQ number, ETX


def qq(payload: bytes, direction_is_client: bool) -> bool:
    """QQ's OICQ packet, bare (UDP) or behind its 16-bit TCP length (which may or may not count itself)."""
    if len(payload) >= 2 + _OICQ_MIN_SIZE and payload[2] == _OICQ_STX:
        declared = _U16.unpack_from(payload, 0)[0]
        if declared in (len(payload), len(payload) - 2):
            return _oicq_packet(payload[2:])
    return _oicq_packet(payload)


def _oicq_packet(packet: bytes) -> bool:
    if len(packet) < _OICQ_MIN_SIZE or packet[0] != _OICQ_STX or packet[-1] != _OICQ_ETX:
        return False
    version, command = _U16.unpack_from(packet, 1)[0], _U16.unpack_from(packet, 3)[0]
    return version != 0 and command in _OICQ_COMMANDS


# --- WeChat (mmtls) ------------------------------------------------------------------------------
# WeChat's own transport security on its long connection (tcp/80, 443, 8080): records shaped
# like TLS's (type, version, 16-bit length) but with mmtls's version 0xF103/0xF104, which no
# TLS or DTLS version uses. Types: alert 0x15, handshake 0x16, application data 0x17, early
# data 0x19. Every whole record in the segment must have that shape.
_MMTLS_TYPES = frozenset((0x15, 0x16, 0x17, 0x19))
_MMTLS_VERSIONS = frozenset((0xF103, 0xF104))
_MMTLS_HEADER_SIZE = 5
_MMTLS_MAX_RECORD = 16384 + 2048


def wechat_mmtls(payload: bytes, direction_is_client: bool) -> bool:
    """One or more mmtls records; the segment may end inside the last record's body."""
    position = 0
    while position + _MMTLS_HEADER_SIZE <= len(payload):
        if payload[position] not in _MMTLS_TYPES or _U16.unpack_from(payload, position + 1)[0] not in _MMTLS_VERSIONS:
            return False
        length = _U16.unpack_from(payload, position + 3)[0]
        if not 0 < length <= _MMTLS_MAX_RECORD:
            return False
        position += _MMTLS_HEADER_SIZE + length
    return position > 0 and position >= len(payload)


# --- AliWangWang / Qianniu (Alibaba's IM) ---------------------------------------------------------
# The client opens its long connection (seen on tcp/443 too) with a key exchange whose call names
# itself in the client's own serialisation: each string is the tag 0x40, a length byte, then the
# text; the call is the service "TcmCore" and the method "exchangeKey" (an open-source AliWangWang
# dissector for nDPI reads "@\x07TcmCore@" seven or nine bytes in, after the frame's own header).
# Both names, with their tags and lengths, must follow one another within that header's reach.
_WANGWANG_CALL = b"\x40\x07TcmCore\x40\x0bexchangeKey"
_WANGWANG_MAX_HEADER = 16


def aliwangwang(payload: bytes, direction_is_client: bool) -> bool:
    position = payload.find(_WANGWANG_CALL, 0, _WANGWANG_MAX_HEADER + len(_WANGWANG_CALL))
    return 0 < position <= _WANGWANG_MAX_HEADER
