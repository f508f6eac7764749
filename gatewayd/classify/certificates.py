"""The names in a TLS server's certificate (TLS 1.2 and earlier send it in clear), from one segment.

Read only for flows whose ClientHello named no server: then the certificate is the
one thing that names the operator. The parser takes the first certificate of the
Certificate message (RFC 5246 section 7.4.2) and reads the issuer's and subject's
common name (2.5.4.3) and organisation (2.5.4.10) from its DER (RFC 5280 section
4.1): both come early in the certificate, so a segment that cuts the rest off still
holds them. Anything it cannot read is "no certificate", never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass

_HANDSHAKE = 22
_CERTIFICATE = 11
_SEQUENCE, _SET, _OID, _EXPLICIT_VERSION = 0x30, 0x31, 0x06, 0xA0
_COMMON_NAME = bytes((0x55, 0x04, 0x03))
_ORGANISATION = bytes((0x55, 0x04, 0x0A))
_MAX_RECORDS = 8


@dataclass(frozen=True)
class CertificateNames:
    issuer_cn: str = ""
    issuer_o: str = ""
    subject_cn: str = ""
    subject_o: str = ""


def server_certificate_names(payload: bytes) -> CertificateNames | None:
    """The names of the first certificate in a server's segment, or None if it holds none."""
    handshake = _handshake_bytes(payload)
    offset = 0
    while offset + 4 <= len(handshake):
        kind, length = handshake[offset], int.from_bytes(handshake[offset + 1:offset + 4], "big")
        if kind == _CERTIFICATE:
            # certificate_list<0..2^24-1>, then each certificate as opaque<1..2^24-1>
            start = offset + 4 + 3 + 3
            return _names_of(handshake[start:start + int.from_bytes(handshake[start - 3:start], "big")])
        offset += 4 + length
    return None


def _handshake_bytes(payload: bytes) -> bytes:
    """The handshake bytes of the TLS records this segment starts with (the last one may be cut)."""
    parts: list[bytes] = []
    offset = 0
    while offset + 5 <= len(payload) and len(parts) < _MAX_RECORDS:
        if payload[offset] != _HANDSHAKE or payload[offset + 1] != 3:
            break
        length = int.from_bytes(payload[offset + 3:offset + 5], "big")
        parts.append(payload[offset + 5:offset + 5 + length])
        offset += 5 + length
    return b"".join(parts)


def _element(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, content start, content end) of the DER element at offset; the end may lie past the data."""
    if offset + 2 > len(data):
        return None
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        return tag, offset + 2, offset + 2 + first
    size = first & 0x7F
    if not 1 <= size <= 3 or offset + 2 + size > len(data):
        return None
    length = int.from_bytes(data[offset + 2:offset + 2 + size], "big")
    return tag, offset + 2 + size, offset + 2 + size + length


def _names_of(der: bytes) -> CertificateNames | None:
    certificate = _element(der, 0)
    tbs = None if certificate is None or certificate[0] != _SEQUENCE else _element(der, certificate[1])
    if tbs is None or tbs[0] != _SEQUENCE:
        return None
    fields: list[tuple[int, int, int]] = []
    offset = tbs[1]
    while len(fields) < 5:  # serial, signature, issuer, validity, subject (after an optional [0] version)
        element = _element(der, offset)
        if element is None:
            return None
        if not fields and element[0] == _EXPLICIT_VERSION:
            offset = element[2]
            continue
        fields.append(element)
        offset = element[2]
    issuer, subject = fields[2], fields[4]
    if issuer[0] != _SEQUENCE or subject[0] != _SEQUENCE or subject[2] > len(der):
        return None
    issuer_names, subject_names = _attributes(der, issuer), _attributes(der, subject)
    return CertificateNames(issuer_names.get(_COMMON_NAME, ""), issuer_names.get(_ORGANISATION, ""),
                            subject_names.get(_COMMON_NAME, ""), subject_names.get(_ORGANISATION, ""))


def _attributes(der: bytes, name: tuple[int, int, int]) -> dict[bytes, str]:
    """OID -> text of a Name's attributes (SEQUENCE OF SET OF SEQUENCE {OID, string})."""
    found: dict[bytes, str] = {}
    offset = name[1]
    while offset < name[2]:
        relative = _element(der, offset)
        if relative is None or relative[0] != _SET:
            break
        offset = relative[2]
        pair = _element(der, relative[1])
        oid = None if pair is None or pair[0] != _SEQUENCE else _element(der, pair[1])
        if oid is None or oid[0] != _OID:
            continue
        value = _element(der, oid[2])
        if value is not None and value[2] <= name[2]:
            found.setdefault(der[oid[1]:oid[2]], der[value[1]:value[2]].decode("utf-8", "replace"))
    return found
