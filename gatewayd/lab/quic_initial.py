"""Build real, decryptable QUIC client Initial packets (v1 or v2) carrying a TLS ClientHello.

For tests and the lab only: the classifier's decryption is checked against an
independent encoder that follows RFC 9001 section 5 (and RFC 9369 for v2)
directly, and namespace tests send these datagrams through the gateway.
`split=True` makes the ClientHello large (a post-quantum sized key share)
so it spans two Initial packets, as Chrome's ML-KEM hellos do.
VERSION_Q050 is Google QUIC Q050: draft-style protected Initials with
Chromium's kQ050Salt, carrying a gQUIC CHLO (tag/value message) in CRYPTO
frames of type 0x08 instead of a TLS ClientHello.
gquic_clear_chlo_packet builds the older Google QUIC versions' first packet,
whose CHLO travels unencrypted: Q043's public header or Q046's invariant long
header, then the 12-byte hash of a null-encrypted packet and a STREAM frame
on the crypto stream (stream 1).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF
# Facebook's mvfst (Facebook's apps): draft-22 and draft-27 keys, v1's packet layout.
VERSION_MVFST_22 = 0xFACEB001
VERSION_MVFST_27 = 0xFACEB002
VERSION_Q050 = 0x51303530  # "Q050"
_SALTS = {
    VERSION_1: bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    VERSION_2: bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
    VERSION_MVFST_22: bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a"),  # draft-ietf-quic-tls-22 5.2
    VERSION_MVFST_27: bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502"),  # drafts 23-28
    VERSION_Q050: bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45"),  # Chromium quic_versions kQ050Salt
}
_LABEL_PREFIX = {VERSION_1: b"quic ", VERSION_2: b"quicv2 ", VERSION_MVFST_22: b"quic ", VERSION_MVFST_27: b"quic ",
                 VERSION_Q050: b"quic "}
_INITIAL_TYPE = {VERSION_1: 0, VERSION_2: 1, VERSION_MVFST_22: 0, VERSION_MVFST_27: 0, VERSION_Q050: 0}
_ZERO_RTT_TYPE = {VERSION_1: 1, VERSION_2: 2}
_MIN_DATAGRAM = 1200


def _expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    full = b"tls13 " + label
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    output, block, counter = b"", b"", 1
    while len(output) < length:
        block = hmac.new(secret, block + info + bytes((counter,)), hashlib.sha256).digest()
        output += block
        counter += 1
    return output[:length]


def client_initial_keys(dcid: bytes, version: int = VERSION_1) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) of the client's Initial packets (RFC 9001 5.2 / RFC 9369 3.3)."""
    initial = hmac.new(_SALTS[version], dcid, hashlib.sha256).digest()
    client = _expand_label(initial, b"client in", 32)
    prefix = _LABEL_PREFIX[version]
    return (_expand_label(client, prefix + b"key", 16), _expand_label(client, prefix + b"iv", 12),
            _expand_label(client, prefix + b"hp", 16))


def client_hello(server_name: str, alpn: tuple[str, ...] = ("h3",), key_share_size: int = 32) -> bytes:
    """A TLS 1.3 ClientHello handshake message (no record header), as CRYPTO frames carry it."""
    name = server_name.encode()
    extensions = b""
    sni = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    extensions += struct.pack("!HH", 0, len(sni)) + sni
    alpn_list = b"".join(bytes((len(p),)) + p.encode() for p in alpn)
    extensions += struct.pack("!HHH", 16, len(alpn_list) + 2, len(alpn_list)) + alpn_list
    extensions += struct.pack("!HHB", 43, 3, 2) + b"\x03\x04"  # supported_versions: TLS 1.3
    share = struct.pack("!HH", 0x11EC, key_share_size) + os.urandom(key_share_size)  # X25519MLKEM768-sized
    extensions += struct.pack("!HHH", 51, len(share) + 2, len(share)) + share
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def gquic_chlo(server_name: str, padding: int = 0, version_tag: bytes = b"Q050") -> bytes:
    """Google QUIC's CHLO: tag count, (tag, cumulative end offset) pairs in tag order, then the values."""
    values = {b"PAD\x00": bytes(padding), b"SNI\x00": server_name.encode(), b"VER\x00": version_tag,
              b"AEAD": b"AESG", b"KEXS": b"C255"}
    table, blob = b"", b""
    for tag in sorted(values, key=lambda name: int.from_bytes(name, "little")):
        blob += values[tag]
        table += tag + struct.pack("<I", len(blob))
    return b"CHLO" + struct.pack("<HH", len(values), 0) + table + blob


_GQUIC_PUBLIC_FLAG_VERSION = 0x01  # Q043 public header: the version follows the connection id
_GQUIC_PUBLIC_FLAG_CID_8 = 0x08  # an 8-byte connection id is present
_GQUIC_NULL_HASH_SIZE = 12  # FNV-1a 128 truncated to 96 bits, before the frames of an unencrypted packet
_GQUIC_STREAM_FRAME = 0xA0  # STREAM, data length present, no offset, 1-byte stream id
_GQUIC_CRYPTO_STREAM = 1
_GQUIC_MAX_PACKET = 1350  # Chromium pads its first packet with PADDING frames to about this size


def gquic_clear_chlo_packet(server_name: str, version_tag: bytes = b"Q043",
                            connection_id: bytes | None = None) -> bytes:
    """The first client packet of Google QUIC Q043 (public header) or Q044-Q046 (long header), CHLO in clear."""
    connection_id = connection_id if connection_id is not None else os.urandom(8)
    chlo = gquic_chlo(server_name, version_tag=version_tag)
    frames = bytes((_GQUIC_STREAM_FRAME, _GQUIC_CRYPTO_STREAM)) + struct.pack("!H", len(chlo)) + chlo
    if version_tag == b"Q043":
        # Public flags, connection id, version, 1-byte packet number (flags bits 0x30 clear).
        header = bytes((_GQUIC_PUBLIC_FLAG_VERSION | _GQUIC_PUBLIC_FLAG_CID_8,)) + connection_id + version_tag + b"\x01"
    else:
        # Long header (form and fixed bits, Initial type, 4-byte packet number), version, DCIL/SCIL
        # nibbles (8-byte destination id, no source id), the id, the packet number.
        header = b"\xc3" + version_tag + b"\x50" + connection_id + struct.pack("!I", 1)
    packet = header + os.urandom(_GQUIC_NULL_HASH_SIZE) + frames
    return packet + bytes(max(0, _GQUIC_MAX_PACKET - len(packet)))  # PADDING frames are zero bytes


def _varint(value: int) -> bytes:
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return struct.pack("!H", 0x4000 | value)
    return struct.pack("!I", 0x80000000 | value)


def _protect(version: int, dcid: bytes, scid: bytes, packet_number: int, frames: bytes) -> bytes:
    key, iv, hp = client_initial_keys(dcid, version)
    pn_length = 2
    header_without_length = (bytes((0xC0 | (_INITIAL_TYPE[version] << 4) | (pn_length - 1),))
                             + struct.pack("!I", version) + bytes((len(dcid),)) + dcid
                             + bytes((len(scid),)) + scid + _varint(0))
    # Pad the frames so the whole datagram reaches 1200 bytes (RFC 9000 14.1).
    overhead = len(header_without_length) + 2 + pn_length + 16
    if overhead + len(frames) < _MIN_DATAGRAM:
        frames += bytes(_MIN_DATAGRAM - overhead - len(frames))
    length = pn_length + len(frames) + 16
    header = header_without_length + struct.pack("!H", 0x4000 | length) + packet_number.to_bytes(pn_length, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, packet_number.to_bytes(12, "big"), strict=True))
    sealed = AESGCM(key).encrypt(nonce, frames, header)
    pn_offset = len(header) - pn_length
    packet = bytearray(header + sealed)
    sample = bytes(packet[pn_offset + 4:pn_offset + 20])
    encryptor = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = encryptor.update(sample) + encryptor.finalize()
    packet[0] ^= mask[0] & 0x0F
    for index in range(pn_length):
        packet[pn_offset + index] ^= mask[1 + index]
    return bytes(packet)


def client_initials(server_name: str, version: int = VERSION_1, split: bool = False,
                    dcid: bytes | None = None) -> list[bytes]:
    """UDP payloads of the client's first flight: one Initial, or two when `split`."""
    dcid = dcid if dcid is not None else os.urandom(8)
    scid = os.urandom(8)
    if version == VERSION_Q050:
        hello = gquic_chlo(server_name, padding=1400 if split else 0)
        crypto = b"\x08"  # gQUIC's CRYPTO frame type (IETF's is 0x06), same offset/length layout
    else:
        hello = client_hello(server_name, key_share_size=1216 if split else 32)
        crypto = b"\x06"
    if not split:
        return [_protect(version, dcid, scid, 0, crypto + _varint(0) + _varint(len(hello)) + hello)]
    half = len(hello) // 2
    # Out of order inside the first packet too, as Chrome scrambles its CRYPTO frames.
    first = (b"\x01" + crypto + _varint(half // 2) + _varint(half - half // 2) + hello[half // 2:half]
             + crypto + _varint(0) + _varint(half // 2) + hello[:half // 2])
    second = crypto + _varint(half) + _varint(len(hello) - half) + hello[half:]
    return [_protect(version, dcid, scid, 0, first), _protect(version, dcid, scid, 1, second)]


def zero_rtt_packet(dcid: bytes, version: int = VERSION_1, size: int = 80) -> bytes:
    """A resuming client's 0-RTT packet: long header of type 0-RTT, then bytes only the server can open."""
    scid = os.urandom(8)
    body = os.urandom(size)
    return (bytes((0xC0 | (_ZERO_RTT_TYPE[version] << 4) | 1,)) + struct.pack("!I", version)
            + bytes((len(dcid),)) + dcid + bytes((len(scid),)) + scid + struct.pack("!H", 0x4000 | len(body))
            + body)
