"""Payloads of apps' own protocols, built from each format's description, for tests and the lab.

The classifier's signatures are checked against these independent encoders
(never against bytes cut from a capture), and namespace tests send them
through the gateway:

  * QQ's OICQ packet: STX 0x02, client version, command, sequence, the QQ
    number (client to server only), the encrypted body, ETX 0x03;
  * STUN/TURN messages (RFC 8489 / RFC 8656): type, length of the
    attributes, magic cookie, 96-bit transaction id, then type-length-value
    attributes padded to 4 bytes;
  * iQIYI's PPStream peer datagram: fixed header fields, the NUL-terminated
    protocol name "PPStream", then the message.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

# QQ commands (Wireshark's OICQ dissector names them) and a QQ 2005 client version.
QQ_LOGIN, QQ_KEEP_ALIVE, QQ_SEND_MESSAGE = 0x0022, 0x0002, 0x0016
QQ2005 = 0x0E1B

STUN_MAGIC_COOKIE = 0x2112A442
STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
TURN_ALLOCATE_REQUEST = 0x0003
# Attribute types, RFC 8489 section 18.3 and RFC 8656 section 18.
STUN_USERNAME = 0x0006
STUN_REALM = 0x0014
STUN_NONCE = 0x0015
TURN_REQUESTED_TRANSPORT = 0x0019
STUN_XOR_MAPPED_ADDRESS = 0x0020
STUN_SOFTWARE = 0x8022
STUN_FINGERPRINT = 0x8028
STUN_ICE_CONTROLLING = 0x802A

StunAttribute = tuple[int, bytes]


def oicq(command: int, sequence: int, body: bytes, qq_number: int | None = 123456789, version: int = QQ2005) -> bytes:
    """One OICQ packet; `qq_number=None` for the server's direction, which carries none."""
    number = struct.pack("!I", qq_number) if qq_number is not None else b""
    return b"\x02" + struct.pack("!HHH", version, command, sequence) + number + body + b"\x03"


def ppstream_datagram(header_before_name: int = 40, size: int = 135) -> bytes:
    """A PPStream peer datagram of `size` bytes whose protocol name starts `header_before_name` bytes in."""
    head = bytes(index % 256 for index in range(header_before_name)) + b"PPStream\x00"
    return head + bytes(size - len(head))


def stun_message(message_type: int, attributes: Sequence[StunAttribute] = (),
                 transaction_id: bytes = bytes(range(1, 13))) -> bytes:
    """A STUN message with the magic cookie; each attribute's value is padded to 4 bytes."""
    if len(transaction_id) != 12:
        raise ValueError("a STUN transaction id is 96 bits")
    body = b"".join(struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
                    for kind, value in attributes)
    return struct.pack("!HHI", message_type, len(body), STUN_MAGIC_COOKIE) + transaction_id + body


def software(text: str) -> StunAttribute:
    """SOFTWARE: the agent's name and version, UTF-8 text."""
    return (STUN_SOFTWARE, text.encode())


def realm(name: str) -> StunAttribute:
    """REALM: the TURN server's realm, usually its operator's domain."""
    return (STUN_REALM, name.encode())


def ice_controlling(tie_breaker: int = 0x0102030405060708) -> StunAttribute:
    return (STUN_ICE_CONTROLLING, struct.pack("!Q", tie_breaker))


def requested_transport_udp() -> StunAttribute:
    return (TURN_REQUESTED_TRANSPORT, bytes((17, 0, 0, 0)))


# --- TLS 1.2 handshake messages (RFC 5246 section 7.4), for clients that name no server ---------------

def tls_handshake_record(*messages: tuple[int, bytes]) -> bytes:
    """One handshake record holding each (type, body) message."""
    handshake = b"".join(bytes((kind,)) + len(body).to_bytes(3, "big") + body for kind, body in messages)
    return b"\x16\x03\x03" + struct.pack("!H", len(handshake)) + handshake


def tls_client_hello_without_name() -> bytes:
    """A TLS 1.2 ClientHello with no extensions, so no server name (section 7.4.1.2)."""
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x00\x2f" + b"\x01\x00"
    return tls_handshake_record((1, body))


def tls_server_certificate_flight(certificate_der: bytes) -> bytes:
    """ServerHello (no extensions) and the Certificate message with one certificate, in one record."""
    server_hello = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x2f" + b"\x00"
    entry = len(certificate_der).to_bytes(3, "big") + certificate_der
    return tls_handshake_record((2, server_hello), (11, len(entry).to_bytes(3, "big") + entry))
