"""SNI from QUIC Initial packets: decrypt (RFC 9001 / RFC 9369), reassemble CRYPTO, parse the ClientHello.

Initial packets are encrypted with keys derived from the client's Destination
Connection ID and a public per-version salt, so any observer can read them;
that is how the SNI of HTTP/3 is visible. Steps per client Initial:
  1. long header -> version, DCID, token, length;
  2. remove header protection (AES-ECB over a 16-byte sample) -> packet number;
  3. AES-128-GCM open -> frames; CRYPTO frames carry the TLS ClientHello,
     possibly split over several frames and several Initial packets (large
     post-quantum key shares make the hello bigger than one datagram);
  4. the reassembled bytes go to tls.parse_handshake_client_hello.
Google QUIC Q043-Q046 sends its CHLO unencrypted; its SNI tag is read directly.
Google QUIC Q050 protects its Initials like draft 29 but with its own salt
(Chromium's kQ050Salt) and carries no TLS: its CRYPTO frames (type 0x08, as
in T050) hold the same CHLO tag/value message, read once decrypted.

Keys use the `cryptography` package (AES); HKDF is a few lines of hmac.
Everything is bounded (frames per packet, reassembly size) and never raises.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Final

from gatewayd.classify import tls as tls_parser

if TYPE_CHECKING:  # cryptography loads on the first QUIC Initial (_client_initial_keys): ~9 MiB a daemon
    from cryptography.hazmat.primitives.ciphers import Cipher, modes  # that sees no QUIC never pays
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION_1 = 0x00000001
VERSION_2 = 0x6B3343CF

# version -> (initial salt, label prefix, Initial packet type bits)
_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
_SALT_V2 = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
_SALT_DRAFT_29 = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")
_SALT_DRAFT_23 = bytes.fromhex("c3eef712c72ebb5a11a7d2432bb46365bef9f502")
_SALT_DRAFT_22 = bytes.fromhex("7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a")
_SALT_T050 = bytes.fromhex("7ff579e5acd072915580304c43a2367c60488310")
_SALT_T051 = bytes.fromhex("7a4edef4e7ccee5fa4506c19124fc8ccda6e033d")
_SALT_Q050 = bytes.fromhex("504574efd066fe2f9d945cfcdbd3a7f0d3b56b45")

MAX_CRYPTO_BYTES = 16 * 1024  # far above a real ClientHello, even with ML-KEM shares
_MAX_FRAMES = 256


class QuicParse(Enum):
    NOT_QUIC = "not-quic"
    NEED_MORE = "need-more"


# Final, so that `result is NEED_MORE` and the like narrow `result` for the type checker.
NOT_QUIC: Final = QuicParse.NOT_QUIC
NEED_MORE: Final = QuicParse.NEED_MORE


@dataclass(frozen=True)
class _VersionParams:
    salt: bytes
    label_prefix: bytes  # b"quic " or b"quicv2 "
    initial_type: int  # long-header packet type bits of an Initial
    crypto_frame: int = 0x06  # Google's T05x and Q050 carry the handshake in frame type 0x08, same layout
    gquic_handshake: bool = False  # Q050: the crypto stream is a gQUIC CHLO, not a TLS ClientHello


def _version_params(version: int) -> _VersionParams | None:
    if version == VERSION_1:
        return _VersionParams(_SALT_V1, b"quic ", 0)
    if version == VERSION_2:
        return _VersionParams(_SALT_V2, b"quicv2 ", 1)
    if 0xFF00001D <= version <= 0xFF000022:  # drafts 29-34
        return _VersionParams(_SALT_DRAFT_29, b"quic ", 0)
    if 0xFF000017 <= version <= 0xFF00001C:  # drafts 23-28
        return _VersionParams(_SALT_DRAFT_23, b"quic ", 0)
    # Facebook's mvfst: 0xfaceb001 follows draft 22, 0xfaceb002 and its experimental alias
    # 0xfaceb00e draft 27 (mvfst's QuicVersion; Wireshark reads them the same way).
    if version in (0xFACEB002, 0xFACEB00E):
        return _VersionParams(_SALT_DRAFT_23, b"quic ", 0)
    if version in (0xFACEB001, 0xFF000016):  # mvfst's draft-22 version, draft 22 itself
        return _VersionParams(_SALT_DRAFT_22, b"quic ", 0)
    if version == 0x54303530:  # "T050": Google QUIC with TLS
        return _VersionParams(_SALT_T050, b"quic ", 0, 0x08)
    if version == 0x54303531:  # "T051"
        return _VersionParams(_SALT_T051, b"quic ", 0, 0x08)
    if version == 0x51303530:  # "Q050": Google QUIC crypto (CHLO) inside draft-style protected Initials
        return _VersionParams(_SALT_Q050, b"quic ", 0, 0x08, gquic_handshake=True)
    return None


def _hkdf_extract(salt: bytes, key_material: bytes) -> bytes:
    return hmac.new(salt, key_material, hashlib.sha256).digest()


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    full_label = b"tls13 " + label
    info = length.to_bytes(2, "big") + bytes((len(full_label),)) + full_label + b"\x00"
    # length <= 32 = one SHA-256 block: a single HMAC round is the whole HKDF-Expand.
    return hmac.new(secret, info + b"\x01", hashlib.sha256).digest()[:length]


@dataclass(frozen=True)
class _InitialKeys:
    aead: AESGCM
    iv: bytes
    header_protection: Cipher[modes.ECB]  # AES-128-ECB


_KEY_CACHE: dict[tuple[int, bytes], _InitialKeys] = {}
_KEY_CACHE_LIMIT = 4096


def _client_initial_keys(version: int, params: _VersionParams, dcid: bytes) -> _InitialKeys:
    cache_key = (version, dcid)
    keys = _KEY_CACHE.get(cache_key)
    if keys is not None:
        return keys
    initial_secret = _hkdf_extract(params.salt, dcid)
    client_secret = _hkdf_expand_label(initial_secret, b"client in", 32)
    prefix = params.label_prefix
    key = _hkdf_expand_label(client_secret, prefix + b"key", 16)
    iv = _hkdf_expand_label(client_secret, prefix + b"iv", 12)
    hp = _hkdf_expand_label(client_secret, prefix + b"hp", 16)
    # Imported here, once, on the first QUIC Initial (~57 ms, one time): see the top.
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    keys = _InitialKeys(AESGCM(key), iv, Cipher(algorithms.AES(hp), modes.ECB()))
    if len(_KEY_CACHE) >= _KEY_CACHE_LIMIT:
        _KEY_CACHE.clear()
    _KEY_CACHE[cache_key] = keys
    return keys


def _varint(data: bytes, position: int) -> tuple[int, int]:
    """(value, next position); IndexError on truncation (the caller's guard turns it into NOT_QUIC)."""
    first = data[position]
    length = 1 << (first >> 6)
    if position + length > len(data):
        raise IndexError("truncated varint")
    value = first & 0x3F
    for index in range(1, length):
        value = (value << 8) | data[position + index]
    return value, position + length


@dataclass
class QuicState:
    """Per-flow reassembly of the client's Initial CRYPTO stream."""

    version: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)  # offset -> data
    total: int = 0

    def add(self, offset: int, data: bytes) -> None:
        if offset + len(data) > MAX_CRYPTO_BYTES or not data:
            return
        known = self.chunks.get(offset)
        if known is None or len(known) < len(data):
            self.total += len(data) - (len(known) if known else 0)
            self.chunks[offset] = data

    def contiguous(self) -> bytes:
        out = bytearray()
        for offset in sorted(self.chunks):
            if offset > len(out):
                break
            data = self.chunks[offset]
            if offset + len(data) > len(out):
                out += data[len(out) - offset:]
        return bytes(out)


@dataclass(frozen=True)
class QuicHello:
    sni: str | None
    alpn: tuple[str, ...]
    version: int
    ech: bool = False


def is_long_header_initial_candidate(payload: bytes) -> bool:
    """Cheap pre-filter for the engine: long header with the fixed bit, or a gQUIC public header."""
    return len(payload) >= 7 and (payload[0] & 0xC0 == 0xC0 or _gquic_public_header(payload))


def _gquic_public_header(payload: bytes) -> bool:
    """Google QUIC <= Q043 public header: version flag, 8-byte connection id, then "Q0xx"."""
    return payload[0] & 0x89 == 0x09 and payload[9:11] == b"Q0" and len(payload) >= 20


def feed(state: QuicState, datagram: bytes) -> QuicHello | QuicParse:
    """Feed one client->server UDP payload. Never raises."""
    try:
        return _feed(state, datagram)
    except Exception:  # IndexError on truncation, InvalidTag on garbage, anything hostile
        return NOT_QUIC


def _feed(state: QuicState, datagram: bytes) -> QuicHello | QuicParse:
    first = datagram[0]
    if _gquic_public_header(datagram):
        return _gquic_chlo(datagram, int.from_bytes(datagram[9:13], "big"))
    if first & 0xC0 != 0xC0:
        return NOT_QUIC
    version = int.from_bytes(datagram[1:5], "big")
    if datagram[1:4] == b"Q04":  # gQUIC Q043..Q046: the CHLO is in clear text
        return _gquic_chlo(datagram, version)
    params = _version_params(version)
    if params is None:
        return NOT_QUIC
    if (first >> 4) & 0x03 != params.initial_type:
        # A 0-RTT or Handshake packet of a version we know is QUIC all the same: a resuming
        # client may send its 0-RTT data ahead of the Initial that carries the hello, or
        # the network may reorder them; the engine's packet budget bounds the wait.
        return NEED_MORE
    position = 5
    dcid_length = datagram[position]
    if dcid_length > 20:
        return NOT_QUIC
    dcid = datagram[position + 1:position + 1 + dcid_length]
    position += 1 + dcid_length
    scid_length = datagram[position]
    if scid_length > 20:
        return NOT_QUIC
    position += 1 + scid_length
    token_length, position = _varint(datagram, position)
    position += token_length
    length, position = _varint(datagram, position)
    pn_offset = position
    if length < 20 or pn_offset + length > len(datagram):
        return NOT_QUIC
    keys = _client_initial_keys(version, params, dcid)
    sample = datagram[pn_offset + 4:pn_offset + 20]
    encryptor = keys.header_protection.encryptor()
    mask = encryptor.update(sample) + encryptor.finalize()
    unmasked_first = first ^ (mask[0] & 0x0F)
    pn_length = (unmasked_first & 0x03) + 1
    # strict=False: a datagram cut short has fewer packet-number bytes than the mask, as before.
    pn_bytes = bytes(b ^ m for b, m in zip(datagram[pn_offset:pn_offset + pn_length], mask[1:1 + pn_length],
                                           strict=False))
    header = bytes((unmasked_first,)) + datagram[1:pn_offset] + pn_bytes
    packet_number = int.from_bytes(pn_bytes, "big")
    nonce = bytes(a ^ b for a, b in zip(keys.iv, packet_number.to_bytes(12, "big"), strict=True))
    ciphertext = datagram[pn_offset + pn_length:pn_offset + length]
    plaintext = keys.aead.decrypt(nonce, ciphertext, header)
    state.version = version
    _crypto_frames(plaintext, state, params.crypto_frame)
    if params.gquic_handshake:
        return _gquic_crypto_stream_chlo(state.contiguous(), version)
    hello = tls_parser.parse_handshake_client_hello(state.contiguous())
    if hello is tls_parser.NEED_MORE:
        return NEED_MORE
    if hello is tls_parser.NOT_TLS:
        return NOT_QUIC
    return QuicHello(hello.sni, hello.alpn, version, hello.ech)


def _crypto_frames(plaintext: bytes, state: QuicState, crypto_frame: int) -> None:
    position = 0
    end = len(plaintext)
    for _ in range(_MAX_FRAMES):
        if position >= end:
            return
        frame_type = plaintext[position]
        if frame_type == 0x00:  # PADDING: usually runs to the end
            position += 1
            while position < end and plaintext[position] == 0:
                position += 1
        elif frame_type == 0x01:  # PING
            position += 1
        elif frame_type in (0x02, 0x03):  # ACK (with ECN counts for 0x03)
            position += 1
            _largest, position = _varint(plaintext, position)
            _delay, position = _varint(plaintext, position)
            ranges, position = _varint(plaintext, position)
            _first, position = _varint(plaintext, position)
            for _range in range(min(ranges, 64)):
                _gap, position = _varint(plaintext, position)
                _length, position = _varint(plaintext, position)
            if frame_type == 0x03:
                for _count in range(3):
                    _ecn, position = _varint(plaintext, position)
        elif frame_type == crypto_frame:  # CRYPTO
            offset, position = _varint(plaintext, position + 1)
            length, position = _varint(plaintext, position)
            state.add(offset, plaintext[position:position + length])
            position += length
        else:  # CONNECTION_CLOSE or anything not allowed in a client Initial: stop here
            return


_GQUIC_SNI_TAG = b"SNI\x00"
_GQUIC_ALPN_TAG = b"ALPN"


def _gquic_crypto_stream_chlo(stream: bytes, version: int) -> QuicHello | QuicParse:
    """Q050's decrypted crypto stream: a CHLO from its first byte, possibly spread over several Initials."""
    if len(stream) < 8:
        return NEED_MORE if b"CHLO".startswith(stream[:4]) else NOT_QUIC
    if stream[:4] != b"CHLO":
        return NOT_QUIC
    tag_count = int.from_bytes(stream[4:6], "little")
    table_end = 8 + 8 * tag_count
    if tag_count > 64:
        return NOT_QUIC
    if len(stream) < table_end:
        return NEED_MORE
    values_end = int.from_bytes(stream[table_end - 4:table_end], "little") if tag_count else 0
    if table_end + values_end > len(stream):
        return NEED_MORE if table_end + values_end <= MAX_CRYPTO_BYTES else NOT_QUIC
    return _gquic_chlo(stream, version)


def _gquic_chlo(datagram: bytes, version: int) -> QuicHello | QuicParse:
    """Google QUIC's handshake message: 'CHLO', tag count, then (tag, end offset) pairs and values."""
    start = datagram.find(b"CHLO")
    if start < 0 or start + 8 > len(datagram):
        return NOT_QUIC
    tag_count = int.from_bytes(datagram[start + 4:start + 6], "little")
    if tag_count > 64:
        return NOT_QUIC
    table = start + 8
    values = table + 8 * tag_count
    if values > len(datagram):
        return NOT_QUIC
    previous_end = 0
    sni: str | None = None
    for index in range(tag_count):
        tag = datagram[table + 8 * index:table + 8 * index + 4]
        end = int.from_bytes(datagram[table + 8 * index + 4:table + 8 * index + 8], "little")
        if end < previous_end or values + end > len(datagram):
            return NOT_QUIC
        if tag == _GQUIC_SNI_TAG:
            sni = datagram[values + previous_end:values + end].decode("latin-1").lower().rstrip(".") or None
        previous_end = end
    return QuicHello(sni, (), version)
