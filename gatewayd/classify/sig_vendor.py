"""Payload signatures of Chinese vendors' own binary framings: Tencent games, Alibaba Cloud, Xiaomi push, DingTalk.

Same contract as signatures.py. None of these protocols has a public
specification; each check insists on the fixed header the vendor's SDK
writes (a magic number and version) AND on a field that must agree with the
packet (a length, a repeated version, a command class), as the open-source
classifiers (nDPI) describe the headers. Magic numbers alone would be too
weak: a signature fires on flows that carry no other evidence.
"""

from __future__ import annotations

from struct import Struct

_U16 = Struct("!H")
_U32 = Struct("!I")
_U32_LE = Struct("<I")

# --- Tencent games: TGCP, the connection protocol of Tencent's game SDK (GCloud/tconnd) -------
# Header: magic 0x3366, protocol version, the same version again (the base version the
# peer negotiated), command. The command's high nibble is its class (1 handshake,
# 2 authentication, 3-6 data, relay and stop) and its low byte the request/answer number.
_TGCP_MAGIC = b"\x33\x66"
_TGCP_MIN_SIZE = 20
_TGCP_COMMAND_CLASSES = range(1, 7)
_TGCP_MAX_VERSION = 0xFF


def tencent_tgcp(payload: bytes, direction_is_client: bool) -> bool:
    if len(payload) < _TGCP_MIN_SIZE or payload[:2] != _TGCP_MAGIC:
        return False
    version, base_version, command = _U16.unpack_from(payload, 2)[0], _U16.unpack_from(payload, 4)[0], \
        _U16.unpack_from(payload, 6)[0]
    return (version == base_version and 1 <= version <= _TGCP_MAX_VERSION
            and command >> 12 in _TGCP_COMMAND_CLASSES and (command >> 8) & 0x0F == 0 and 1 <= command & 0xFF <= 0x20)


# --- Alibaba Cloud: the framing of its agents' long connection ---------------------------------
# Magic 0xCEFABEBA, then the little-endian 32-bit length of the body that follows. The
# client sends a header alone (8 bytes) with its body in the next segment.
_ALICLOUD_MAGIC = b"\xce\xfa\xbe\xba"
_ALICLOUD_HEADER_SIZE = 8
_ALICLOUD_MAX_BODY = 16 * 1024 * 1024


def alicloud(payload: bytes, direction_is_client: bool) -> bool:
    if len(payload) < _ALICLOUD_HEADER_SIZE or payload[:4] != _ALICLOUD_MAGIC:
        return False
    declared: int = _U32_LE.unpack_from(payload, 4)[0]
    if len(payload) == _ALICLOUD_HEADER_SIZE:
        return 0 < declared <= _ALICLOUD_MAX_BODY
    return declared == len(payload) - _ALICLOUD_HEADER_SIZE


# --- Xiaomi: Mi Push (the phone's system push channel, tcp/5222) -----------------------------
# Magic 0xC2FE, protocol version 5, the 32-bit length of the body after the 12-byte header.
_XIAOMI_PUSH_MAGIC = b"\xc2\xfe\x00\x05"
_XIAOMI_PUSH_HEADER_SIZE = 12


def xiaomi_push(payload: bytes, direction_is_client: bool) -> bool:
    if len(payload) < _XIAOMI_PUSH_HEADER_SIZE or payload[:4] != _XIAOMI_PUSH_MAGIC:
        return False
    declared: int = _U32.unpack_from(payload, 4)[0]
    return declared == len(payload) - _XIAOMI_PUSH_HEADER_SIZE


# --- DingTalk: the client's opening message on its own long connection (tcp/443 and others) ----
# As nDPI's DingTalk dissector (protocols/dingtalk.c) reads it: first byte 0x10, one free byte,
# then 14 bytes the protocol fixes (87 80 01 00 01 00 02 00 02, the product tag "dk", 03 00 20),
# and more than 90 bytes in all. No public specification says what those fields mean, so the
# check is exactly the dissector's and no looser: 112 fixed bits leave no room for chance.
_DINGTALK_FIRST_BYTE = 0x10
_DINGTALK_HEADER = bytes.fromhex("878001000100020002") + b"dk" + bytes.fromhex("030020")
_DINGTALK_MIN_SIZE = 91


def dingtalk(payload: bytes, direction_is_client: bool) -> bool:
    return (len(payload) >= _DINGTALK_MIN_SIZE and payload[0] == _DINGTALK_FIRST_BYTE
            and payload[2:2 + len(_DINGTALK_HEADER)] == _DINGTALK_HEADER)
