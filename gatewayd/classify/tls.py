"""SNI and ALPN from a TLS ClientHello in the client->server byte stream.

The caller passes every client->server byte seen so far (the ClientHello can
span several TCP segments, and the handshake message can even span several
TLS records). The answer is NEED_MORE, NOT_TLS or a TlsClientHello.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Final

_CONTENT_HANDSHAKE = 0x16
_HANDSHAKE_CLIENT_HELLO = 0x01
_EXTENSION_SERVER_NAME = 0
_EXTENSION_ALPN = 16
_EXTENSION_ECH = 0xFE0D  # encrypted_client_hello (RFC 9849 / draft-ietf-tls-esni)
_MAX_RECORD_LENGTH = 16384 + 2048  # RFC 8446 upper bound on TLSCiphertext
_MAX_CLIENT_HELLO_LENGTH = 64 * 1024  # far beyond any real hello; refuse absurd claims


class TlsParse(Enum):
    NEED_MORE = "need-more"
    NOT_TLS = "not-tls"


# Final, so that `result is NEED_MORE` and the like narrow `result` for the type checker.
NEED_MORE: Final = TlsParse.NEED_MORE
NOT_TLS: Final = TlsParse.NOT_TLS


@dataclass(frozen=True, slots=True)
class TlsClientHello:
    sni: str | None  # lowercase, trailing dot removed; None when the hello has no SNI
    alpn: tuple[str, ...]
    legacy_version: int
    ech: bool = False  # the hello carries an encrypted inner hello: `sni` is only the outer name


def parse_client_hello(stream: bytes | bytearray) -> TlsClientHello | TlsParse:
    """Classify the start of a client->server stream. Never raises."""
    try:
        return _parse(stream)
    except Exception:  # belt and braces: every index below is checked, but input is hostile
        return NOT_TLS


def _parse(stream: bytes | bytearray) -> TlsClientHello | TlsParse:
    length = len(stream)
    if length == 0:
        return NEED_MORE
    # Fast rejection on the first bytes: most non-TLS flows fail here.
    if stream[0] != _CONTENT_HANDSHAKE:
        return NOT_TLS
    if length >= 2 and stream[1] != 3:
        return NOT_TLS
    if length >= 3 and stream[2] > 4:
        return NOT_TLS
    if length >= 6 and stream[5] != _HANDSHAKE_CLIENT_HELLO:
        return NOT_TLS
    handshake = _collect_handshake(stream)
    if not isinstance(handshake, (bytes, bytearray)):
        return handshake
    return _parse_hello_body(handshake)


def parse_handshake_client_hello(handshake: bytes) -> TlsClientHello | TlsParse:
    """A ClientHello handshake message without record framing (as QUIC's CRYPTO frames carry it)."""
    try:
        if len(handshake) < 4:
            return NEED_MORE
        if handshake[0] != _HANDSHAKE_CLIENT_HELLO:
            return NOT_TLS
        needed = 4 + ((handshake[1] << 16) | (handshake[2] << 8) | handshake[3])
        if needed > _MAX_CLIENT_HELLO_LENGTH or needed < 4 + 38:
            return NOT_TLS
        if len(handshake) < needed:
            return NEED_MORE
        return _parse_hello_body(bytes(handshake[4:needed]))
    except Exception:
        return NOT_TLS


def _collect_handshake(stream: bytes | bytearray) -> bytes | TlsParse:
    """Concatenate handshake record fragments until the whole ClientHello is there."""
    body = bytearray()
    needed = -1  # handshake header + ClientHello length, known after 4 bytes
    offset = 0
    while True:
        if offset + 5 > len(stream):
            return NEED_MORE
        if stream[offset] != _CONTENT_HANDSHAKE or stream[offset + 1] != 3:
            return NOT_TLS
        record_length = (stream[offset + 3] << 8) | stream[offset + 4]
        if record_length == 0 or record_length > _MAX_RECORD_LENGTH:
            return NOT_TLS
        record_end = offset + 5 + record_length
        body += stream[offset + 5:min(record_end, len(stream))]
        if needed < 0 and len(body) >= 4:
            if body[0] != _HANDSHAKE_CLIENT_HELLO:
                return NOT_TLS
            needed = 4 + ((body[1] << 16) | (body[2] << 8) | body[3])
            if needed > _MAX_CLIENT_HELLO_LENGTH or needed < 4 + 38:
                return NOT_TLS
        if needed >= 0 and len(body) >= needed:
            return bytes(body[4:needed])
        if record_end > len(stream):
            return NEED_MORE
        offset = record_end


def _parse_hello_body(hello: bytes) -> TlsClientHello | TlsParse:
    end = len(hello)
    legacy_version = (hello[0] << 8) | hello[1]
    if hello[0] != 3:
        return NOT_TLS
    position = 2 + 32  # version + random
    session_id_length = hello[position]
    if session_id_length > 32:
        return NOT_TLS
    position += 1 + session_id_length
    if position + 2 > end:
        return NOT_TLS
    cipher_suites_length = (hello[position] << 8) | hello[position + 1]
    position += 2 + cipher_suites_length
    if position + 1 > end:
        return NOT_TLS
    position += 1 + hello[position]  # compression methods
    if position == end:
        return TlsClientHello(None, (), legacy_version)  # SSLv3-style hello without extensions
    if position + 2 > end:
        return NOT_TLS
    extensions_end = position + 2 + ((hello[position] << 8) | hello[position + 1])
    if extensions_end > end:
        return NOT_TLS
    position += 2
    sni: str | None = None
    alpn: tuple[str, ...] = ()
    ech = False
    while position + 4 <= extensions_end:
        extension_type = (hello[position] << 8) | hello[position + 1]
        extension_length = (hello[position + 2] << 8) | hello[position + 3]
        data_start = position + 4
        data_end = data_start + extension_length
        if data_end > extensions_end:
            return NOT_TLS
        if extension_type == _EXTENSION_SERVER_NAME and sni is None:
            sni = _server_name(hello, data_start, data_end)
        elif extension_type == _EXTENSION_ALPN and not alpn:
            alpn = _alpn_protocols(hello, data_start, data_end)
        elif extension_type == _EXTENSION_ECH and extension_length and hello[data_start] == 0:
            ech = True  # type 0 = outer hello; an inner (type 1) hello is not sent in clear
        position = data_end
    return TlsClientHello(sni, alpn, legacy_version, ech)


def _server_name(hello: bytes, start: int, end: int) -> str | None:
    if start + 2 > end:
        return None
    list_end = min(end, start + 2 + ((hello[start] << 8) | hello[start + 1]))
    position = start + 2
    while position + 3 <= list_end:
        name_type = hello[position]
        name_length = (hello[position + 1] << 8) | hello[position + 2]
        name_start = position + 3
        if name_start + name_length > list_end:
            return None
        if name_type == 0 and name_length:
            name = hello[name_start:name_start + name_length].decode("latin-1").lower().rstrip(".")
            return name or None
        position = name_start + name_length
    return None


def _alpn_protocols(hello: bytes, start: int, end: int) -> tuple[str, ...]:
    if start + 2 > end:
        return ()
    list_end = min(end, start + 2 + ((hello[start] << 8) | hello[start + 1]))
    protocols: list[str] = []
    position = start + 2
    while position < list_end and len(protocols) < 32:
        length = hello[position]
        if position + 1 + length > list_end:
            break
        protocols.append(hello[position + 1:position + 1 + length].decode("latin-1"))
        position += 1 + length
    return tuple(protocols)
