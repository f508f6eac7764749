"""Payload signatures of tunnels, remote access, mail and app-specific protocols.

Same contract as signatures.py. Each check follows the protocol's public
specification (RFC or vendor document) and insists on the fields that must
agree with the packet (lengths, magic numbers, reserved bits).
"""

from __future__ import annotations

from struct import Struct

_U16 = Struct("!H")
_U32 = Struct("!I")

# --- remote access --------------------------------------------------------------------------


_X224_CONNECTION_REQUEST = 0xE0
_X224_CONNECTION_CONFIRM = 0xD0
_RDP_NEG_REQ = 0x01  # [MS-RDPBCGR] 2.2.1.1.1
_RDP_NEG_RSP, _RDP_NEG_FAILURE = 0x02, 0x03  # 2.2.1.2.1, 2.2.1.2.2
_RDP_CORRELATION_INFO_SIZE = 36  # 2.2.1.1.2, after RDP_NEG_REQ when its flag 0x08 is set


def rdp(payload: bytes, direction_is_client: bool) -> bool:
    """RDP's first packet: TPKT (version 3, length = packet) carrying an X.224 Connection Request/Confirm
    whose variable part is RDP's own ([MS-RDPBCGR] 2.2.1.1 and 2.2.1.2).

    TPKT + X.224 alone is ISO transport over TCP (RFC 1006), shared by S7comm, MMS
    and others; their requests carry TSAP parameters (0xC0-0xC2) where RDP carries
    a "Cookie:" line and an 8-byte negotiation structure."""
    if len(payload) < 11 or payload[0] != 3 or payload[1] != 0:
        return False
    if _U16.unpack_from(payload, 2)[0] != len(payload):
        return False
    x224_length, tpdu = payload[4], payload[5] & 0xF0
    if x224_length != len(payload) - 5 or payload[10] != 0:  # class 0, no options
        return False
    variable = payload[11:]
    if tpdu == _X224_CONNECTION_REQUEST:
        if variable.startswith(b"Cookie: "):  # mstshash cookie or load-balancer routing token, CR LF ended
            end = variable.find(b"\r\n")
            if end < 0:
                return False
            variable = variable[end + 2:]
        if not variable:
            return True
        return (variable[0] == _RDP_NEG_REQ and _negotiation_length_ok(variable)
                and len(variable) in (8, 8 + _RDP_CORRELATION_INFO_SIZE))
    if tpdu == _X224_CONNECTION_CONFIRM:
        return not variable or (len(variable) == 8 and variable[0] in (_RDP_NEG_RSP, _RDP_NEG_FAILURE)
                                and _negotiation_length_ok(variable))
    return False


def _negotiation_length_ok(structure: bytes) -> bool:
    return len(structure) >= 8 and structure[2:4] == b"\x08\x00"  # little-endian length, always 8


def teamviewer(payload: bytes, direction_is_client: bool) -> bool:
    """TeamViewer's framing: 0x17 0x24 (or 0x11 0x30) command prefix; over UDP after an 11-byte header."""
    if payload[:2] in (b"\x17\x24", b"\x11\x30") and len(payload) >= 4:
        return True
    return len(payload) >= 16 and payload[:11] == b"\x00" * 10 + b"\x03" and payload[11:13] == b"\x17\x24"


# --- mail (servers speak first) -------------------------------------------------------------


def smtp(payload: bytes, direction_is_client: bool) -> bool:
    if payload.startswith(b"220") and payload[3:4] in (b" ", b"-") and payload.endswith(b"\r\n"):
        return b"SMTP" in payload[:256].upper() or b"MAIL" in payload[:256].upper()
    return payload[:5] in (b"EHLO ", b"HELO ") and payload.endswith(b"\r\n")


def imap(payload: bytes, direction_is_client: bool) -> bool:
    return payload.startswith(b"* OK") and b"IMAP" in payload[:512].upper() and payload.endswith(b"\r\n")


def pop3(payload: bytes, direction_is_client: bool) -> bool:
    return (payload.startswith(b"+OK") and payload.endswith(b"\r\n")
            and (b"POP" in payload[:256].upper() or b"<" in payload[:256] or b"ready" in payload[:256].lower()))


# --- VPN and tunnels ---------------------------------------------------------------------------

_PPTP_MAGIC = 0x1A2B3C4D


def pptp(payload: bytes, direction_is_client: bool) -> bool:
    """PPTP control connection (RFC 2637): length, message type 1, magic cookie; also its enhanced GRE."""
    if len(payload) >= 12 and _U16.unpack_from(payload, 0)[0] == len(payload) and \
            _U16.unpack_from(payload, 2)[0] == 1 and _U32.unpack_from(payload, 4)[0] == _PPTP_MAGIC:
        message_type: int = _U16.unpack_from(payload, 8)[0]
        return 1 <= message_type <= 15
    # Enhanced GRE (IP protocol 47) carrying PPP: version 1, protocol 0x880b, key bit set.
    return (len(payload) >= 8 and payload[1] & 0x07 == 1 and (payload[0] & 0x20) != 0
            and payload[2:4] == b"\x88\x0b")


_IKE_V1_EXCHANGES = frozenset((1, 2, 4, 5, 6, 32))
_IKE_V2_EXCHANGES = frozenset((34, 35, 36, 37))


def ipsec(payload: bytes, direction_is_client: bool) -> bool:
    """IKEv1/IKEv2 header (RFC 2408/7296), bare on udp/500 or after the NAT-T non-ESP marker on udp/4500;
    ESP itself (IP protocol 50) carries an SPI and a sequence number that starts at 1."""
    body = payload[4:] if payload[:4] == b"\x00\x00\x00\x00" else payload
    if len(body) >= 28 and body[:8] != bytes(8):
        version, exchange = body[17], body[18]
        if _U32.unpack_from(body, 24)[0] == len(body):
            if version == 0x20 and exchange in _IKE_V2_EXCHANGES:
                return True
            if version == 0x10 and exchange in _IKE_V1_EXCHANGES:
                return True
    return False


def esp(payload: bytes, direction_is_client: bool) -> bool:
    """ESP (IP protocol 50): non-zero SPI, then a sequence number; nothing else is in clear text."""
    return len(payload) >= 16 and payload[:4] != b"\x00\x00\x00\x00"


def l2tp(payload: bytes, direction_is_client: bool) -> bool:
    """L2TPv2 control message (RFC 2661): T, L and S bits set, version 2, length = packet."""
    if len(payload) < 12 or payload[0] & 0xCB != 0xC8 or payload[1] & 0x0F != 2:
        return False
    declared: int = _U16.unpack_from(payload, 2)[0]
    return declared == len(payload)


# --- app-specific ----------------------------------------------------------------------------------


def whatsapp(payload: bytes, direction_is_client: bool) -> bool:
    """WhatsApp's chat connection opens with its Noise prologue "ED\\0\\1" or the older "WA" + version."""
    if payload.startswith(b"ED\x00\x01"):
        return len(payload) == 4 or payload[4:7] == b"\x00\x00\x04" or payload[4:6] == b"\x00\x00"
    return len(payload) >= 4 and payload[:2] == b"WA" and payload[2] in (1, 2, 3, 4, 5, 6) and payload[3] <= 9


def dropbox_lansync(payload: bytes, direction_is_client: bool) -> bool:
    """Dropbox LAN sync discovery broadcast (udp/17500): a JSON object naming its host_int."""
    return payload.startswith(b'{"host_int":') or (payload.startswith(b"{") and b'"host_int"' in payload[:64])


def spotify_discovery(payload: bytes, direction_is_client: bool) -> bool:
    """Spotify's LAN discovery broadcast (udp/57621)."""
    return payload.startswith(b"SpotUdp0")


def steam(payload: bytes, direction_is_client: bool) -> bool:
    """Steam in-home streaming discovery (udp/27036) and the VS01 datagram relay handshake."""
    return payload.startswith(b"\xff\xff\xff\xff\x21\x4c\x5f\xa0") or payload.startswith(b"VS01")


def source_engine(payload: bytes, direction_is_client: bool) -> bool:
    """Valve Source engine connectionless queries (A2S_INFO, A2S_PLAYER, challenge replies)."""
    return payload.startswith(b"\xff\xff\xff\xffTSource Engine Query") or (
        len(payload) >= 5 and payload[:4] == b"\xff\xff\xff\xff" and payload[4] in b"UVWAIDE")


# Epic Online Services' game and relay sessions (UDP), as nDPI's EpicGames dissector documents
# them: the opening datagram is a 32-bit header word with bit 0x08 clear, then 24 zero bytes at
# offsets 10-33; the peer's first datagram repeats that word with bit 0x08 set. Neither half
# alone says enough, so the word of the opening is the token the answer must echo.
_EPIC_ANSWER_BIT = 0x08
_EPIC_ZEROS = bytes(24)


def epic_opening(payload: bytes) -> int | None:
    """The header word of an Epic session's opening datagram, or None if this is not one."""
    if len(payload) < 34 or payload[10:34] != _EPIC_ZEROS:
        return None
    word = int.from_bytes(payload[:4], "big")
    return None if word & _EPIC_ANSWER_BIT else word


def epic_answer(payload: bytes, opening_word: int) -> bool:
    """The peer's answer: the opening's header word with the answer bit set."""
    return len(payload) > 4 and int.from_bytes(payload[:4], "big") == opening_word | _EPIC_ANSWER_BIT


# --- STARTTLS (the client upgrades a plaintext mail session) ----------------------------------

# The plaintext mail signature -> the app id of the same service over TLS (catalog ids).
MAIL_TLS_VARIANTS = {"smtp": "smtps", "imap": "imaps", "pop3": "pops"}


def starttls_command(signature: str, payload: bytes) -> bool | None:
    """A client's next command in a mail session: True for the upgrade (SMTP STARTTLS, RFC 3207;
    IMAP "<tag> STARTTLS", RFC 3501; POP3 STLS, RFC 2595), None for the commands that may come
    before it (EHLO/HELO, CAPABILITY, CAPA), False for any other: the session stays plaintext."""
    if not payload.endswith(b"\r\n"):
        return None  # a command cut in two segments: wait for the rest
    line = payload[:-2].upper()
    if signature == "smtp":
        return True if line == b"STARTTLS" else (None if line[:5] in (b"EHLO ", b"HELO ") else False)
    if signature == "imap":
        words = line.split(b" ")
        if len(words) == 2 and words[0]:
            return True if words[1] == b"STARTTLS" else (None if words[1] == b"CAPABILITY" else False)
        return False
    if signature == "pop3":
        return True if line == b"STLS" else (None if line == b"CAPA" else False)
    return False
