"""Named payload signatures for the first packets of a flow.

Each signature is `match(payload, direction_is_client) -> bool` and looks at
one packet's L4 payload only. They are deliberately strict (exact sizes,
reserved bits, length fields that must agree with the packet) because a
signature fires on flows that carry no other evidence, so a false positive
mislabels traffic that would otherwise stay "unknown".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from struct import Struct

from gatewayd.classify import sig_calls, sig_im, sig_p2p, sig_services, sig_tls, sig_vendor
from gatewayd.classify.packet import PROTO_TCP, PROTO_UDP
from gatewayd.policy.model import SIGNATURE_NAMES

Signature = Callable[[bytes, bool], bool]
Opening = Callable[[bytes], int | None]  # the client's first datagram -> a token its answer must carry
Answer = Callable[[bytes, int], bool]

_U16 = Struct("!H")
_U32 = Struct("!I")
_U32_LE = Struct("<I")

_BITTORRENT_HANDSHAKE = b"\x13BitTorrent protocol"
_DHT_PREFIXES = (b"d1:ad2:id20:", b"d1:rd2:id20:", b"d1:eli", b"d2:ip6:", b"d2:ip18:")
_DHT_MARKERS = (b"1:y1:q", b"1:y1:r", b"1:y1:e")
_UDP_TRACKER_MAGIC = b"\x00\x00\x04\x17\x27\x10\x19\x80"
_UTP_SYN_FIRST_BYTE = 0x41  # type ST_SYN (4) << 4 | version 1


def bittorrent(payload: bytes, direction_is_client: bool) -> bool:
    if payload.startswith(_BITTORRENT_HANDSHAKE):
        return True
    if payload.startswith(b"BT-SEARCH * HTTP/1.1\r\n"):  # BEP 14 local service discovery
        return b"\r\nInfohash: " in payload or b"\r\ninfohash: " in payload
    if payload[:1] == b"d":  # bencoded DHT (KRPC) message
        if payload.startswith(_DHT_PREFIXES) and payload.endswith(b"e"):
            return True
        return payload.endswith(b"e") and b"2:id20:" in payload and any(m in payload for m in _DHT_MARKERS)
    # UDP tracker "connect" request: fixed protocol id, action 0, 16 bytes.
    if len(payload) == 16 and payload.startswith(_UDP_TRACKER_MAGIC) and payload[8:12] == b"\x00\x00\x00\x00":
        return True
    return _utp_syn(payload)


def _utp_syn(payload: bytes) -> bool:
    """uTP connection request: type SYN, version 1, no timestamp difference, empty payload."""
    if len(payload) < 20 or payload[0] != _UTP_SYN_FIRST_BYTE:
        return False
    extension = payload[1]
    if payload[8:12] != b"\x00\x00\x00\x00":  # timestamp_difference is 0 before any reply
        return False
    position = 20
    for _ in range(4):  # walk the (rare) extension chain; SYNs carry no data after it
        if extension == 0:
            return position == len(payload)
        if extension > 2 or position + 2 > len(payload):
            return False
        extension, length = payload[position], payload[position + 1]
        position += 2 + length
    return False


# RFC 4253 section 5: "SSH-2.0-", "SSH-1.99-" (a server speaking both), and the
# identification strings of SSH protocol 1 (1.3 and 1.5), which old servers still send.
_SSH_VERSIONS = (b"SSH-2.0-", b"SSH-1.99-", b"SSH-1.5-", b"SSH-1.3-")


def ssh(payload: bytes, direction_is_client: bool) -> bool:
    # The identification string; either side may send it first.
    return payload.startswith(_SSH_VERSIONS)


_EDONKEY_MARKERS = (0xE3, 0xC5, 0xD4)  # eDonkey, eMule extensions, eMule zlib-packed


def edonkey(payload: bytes, direction_is_client: bool) -> bool:
    """eDonkey/eMule TCP framing: marker, little-endian length of opcode+data, opcode."""
    if len(payload) < 6 or payload[0] not in _EDONKEY_MARKERS:
        return False
    declared: int = _U32_LE.unpack_from(payload, 1)[0]
    # First packets (Hello) are small and whole: the length must match exactly.
    return declared >= 1 and declared == len(payload) - 5


_OPENVPN_CLIENT_RESETS = (1, 7, 10)  # P_CONTROL_HARD_RESET_CLIENT_V1/V2/V3
_OPENVPN_SERVER_RESETS = (2, 8)
_OPENVPN_HMAC_SIZES = {42: 20, 54: 32, 86: 64}  # whole reset packet size -> tls-auth HMAC size
_YEAR_2010 = 0x4B000000
_YEAR_2100 = 0xF4000000


def openvpn(payload: bytes, direction_is_client: bool) -> bool:
    """OpenVPN hard-reset control packets (first packet of a session), over UDP or TCP."""
    body = payload
    if len(payload) >= 3 and _U16.unpack_from(payload, 0)[0] == len(payload) - 2:
        body = payload[2:]  # TCP framing: 16-bit packet length
    if len(body) < 14 or body[0] & 0x07:  # key id must be 0 during the reset
        return False
    opcode = body[0] >> 3
    if opcode in _OPENVPN_CLIENT_RESETS:
        if len(body) == 14:  # no tls-auth: session id, empty ack array, message id 0
            return body[9:14] == b"\x00\x00\x00\x00\x00"
        hmac_size = _OPENVPN_HMAC_SIZES.get(len(body))
        if hmac_size is not None and body[-5:] == b"\x00\x00\x00\x00\x00":
            message_id: int = _U32.unpack_from(body, 9 + hmac_size)[0]
            return 1 <= message_id <= 0xFF
        # tls-crypt: session id, replay packet id (starts at 1), unix time, then ciphertext.
        if len(body) >= 1 + 8 + 8 + 32:
            packet_id: int = _U32.unpack_from(body, 9)[0]
            timestamp: int = _U32.unpack_from(body, 13)[0]
            return 1 <= packet_id <= 0xFF and _YEAR_2010 <= timestamp <= _YEAR_2100
        return False
    if opcode in _OPENVPN_SERVER_RESETS and len(body) == 26:
        # no tls-auth: session id, ack array of one id, remote session id, message id 0
        return body[9] == 1 and body[22:26] == b"\x00\x00\x00\x00"
    return False


_WIREGUARD_SIZES = {1: 148, 2: 92, 3: 64}


def wireguard(payload: bytes, direction_is_client: bool) -> bool:
    if len(payload) < 32 or payload[1:4] != b"\x00\x00\x00":
        return False
    message_type = payload[0]
    expected = _WIREGUARD_SIZES.get(message_type)
    if expected is not None:
        return len(payload) == expected
    # Transport data: 16-byte header + AEAD ciphertext padded to 16 bytes + 16-byte tag.
    return message_type == 4 and len(payload) % 16 == 0


_STUN_MAGIC_COOKIE = b"\x21\x12\xa4\x42"


def stun(payload: bytes, direction_is_client: bool) -> bool:
    """RFC 5389 STUN: top two bits 0, magic cookie, length = attributes, 4-byte aligned (framed on TCP or not)."""
    payload = sig_calls.unframed_stun(payload)
    if len(payload) < 20 or payload[0] & 0xC0 or payload[4:8] != _STUN_MAGIC_COOKIE:
        return False
    declared: int = _U16.unpack_from(payload, 2)[0]
    return declared == len(payload) - 20 and declared % 4 == 0


# Vendor STUN attributes, from their public specifications.
# [MS-TURN] and [MS-ICE2]: MS-Version, MS-Sequence-Number, Candidate-Identifier,
# MS-Service-Quality, MS-Implementation-Version: Teams and Skype calls.
_MS_STUN_ATTRIBUTES = frozenset((0x8008, 0x8050, 0x8054, 0x8055, 0x8070))
# WhatsApp calls use their own message types 0x0800-0x0805 and attributes 0x4000-0x4007.
_WHATSAPP_STUN_TYPES = range(0x0800, 0x0806)
_WHATSAPP_STUN_ATTRIBUTES = range(0x4000, 0x4008)


def stun_msteams(payload: bytes, direction_is_client: bool) -> bool:
    attributes = sig_calls.stun_attributes(payload)
    return attributes is not None and any(kind in _MS_STUN_ATTRIBUTES for kind, _ in attributes)


def stun_whatsapp(payload: bytes, direction_is_client: bool) -> bool:
    attributes = sig_calls.stun_attributes(payload)
    if attributes is None:
        return False
    return (_U16.unpack_from(payload, 0)[0] in _WHATSAPP_STUN_TYPES
            or any(kind in _WHATSAPP_STUN_ATTRIBUTES for kind, _ in attributes))


PROTO_GRE = 47
PROTO_ESP = 50
_TCP_UDP = frozenset((PROTO_TCP, PROTO_UDP))
_TCP = frozenset((PROTO_TCP,))
_UDP = frozenset((PROTO_UDP,))

# name -> (match, transports it is meaningful on). The transport filter skips e.g.
# WireGuard checks on TCP payloads, where its weak "type 4 + zeros" shape would only
# produce noise.
_REGISTRY: dict[str, tuple[Signature, frozenset[int]]] = {
    "bittorrent": (bittorrent, _TCP_UDP),
    "ssh": (ssh, _TCP),
    "edonkey": (edonkey, _TCP),
    "edonkey_udp": (sig_p2p.edonkey_udp, _UDP),
    "gnutella": (sig_p2p.gnutella, _TCP),
    "gnutella_udp": (sig_p2p.gnutella_udp, _UDP),
    "thunder": (sig_p2p.thunder, _TCP),
    "pplive": (sig_p2p.pplive, _UDP),
    "ppstream": (sig_p2p.ppstream, _UDP),
    "openvpn": (openvpn, _TCP_UDP),
    "wireguard": (wireguard, _UDP),
    "stun": (stun, _TCP_UDP),
    "stun_msteams": (stun_msteams, _TCP_UDP),  # Teams falls back to ICE over TCP
    "stun_whatsapp": (stun_whatsapp, _UDP),
    "stun_zoom": (sig_calls.stun_zoom, _UDP),
    "stun_googlecall": (sig_calls.stun_googlecall, _UDP),
    "sd_rtn": (sig_calls.sd_rtn, _UDP),
    "zoom_p2p": (sig_calls.zoom_p2p, _UDP),
    "rdp": (sig_services.rdp, _TCP),
    "teamviewer": (sig_services.teamviewer, _TCP_UDP),
    "smtp": (sig_services.smtp, _TCP),
    "imap": (sig_services.imap, _TCP),
    "pop3": (sig_services.pop3, _TCP),
    "pptp": (sig_services.pptp, frozenset((PROTO_TCP, PROTO_GRE))),
    "ipsec": (sig_services.ipsec, _UDP),
    "esp": (sig_services.esp, frozenset((PROTO_ESP,))),
    "l2tp": (sig_services.l2tp, _UDP),
    "whatsapp": (sig_services.whatsapp, _TCP),
    "qq": (sig_im.qq, _TCP_UDP),
    "wechat_mmtls": (sig_im.wechat_mmtls, _TCP),
    "dropbox_lansync": (sig_services.dropbox_lansync, _UDP),
    "spotify_discovery": (sig_services.spotify_discovery, _UDP),
    "steam": (sig_services.steam, _UDP),
    "source_engine": (sig_services.source_engine, _UDP),
    "tencent_tgcp": (sig_vendor.tencent_tgcp, _TCP),
    "alicloud": (sig_vendor.alicloud, _TCP),
    "xiaomi_push": (sig_vendor.xiaomi_push, _TCP),
    "dingtalk": (sig_vendor.dingtalk, _TCP),
    "aliwangwang": (sig_im.aliwangwang, _TCP),
}

SIGNATURES: dict[str, Signature] = {name: entry[0] for name, entry in _REGISTRY.items()}
SIGNATURE_PROTOCOLS: dict[str, frozenset[int]] = {name: entry[1] for name, entry in _REGISTRY.items()}

# Signatures too weak for one packet: the flow is decided only once packets in BOTH
# directions matched (a request and its answer in the same dialect).
TWO_WAY_SIGNATURES: dict[str, tuple[Signature, frozenset[int]]] = {
    "thunder": (sig_p2p.thunder_binary, _TCP_UDP),
    "zoom_media": (sig_calls.zoom_media, _UDP),  # each side's direction byte must be its own
}

# Exchanges: the client's first datagram yields a token, and the flow is decided only
# when the server's answer carries it (a handshake whose halves are weak alone).
EXCHANGE_SIGNATURES: dict[str, tuple[Opening, Answer, frozenset[int]]] = {
    "epicgames": (sig_services.epic_opening, sig_services.epic_answer, _UDP),
}

# Generic transports: the signature names the protocol, and the app comes from the
# addresses (catalog networks or DNS-learned) when they say more, e.g. STUN of a Zoom call.
CARRIER_SIGNATURES = frozenset(("stun",))
# Signatures that name the app a call's STUN belongs to; the call's other STUN flows
# from the same endpoint (ICE checks to peers: plain STUN only) take that app too.
CALL_SIGNATURES = frozenset(("stun_msteams", "stun_whatsapp", "stun_zoom", "stun_googlecall", "zoom_p2p"))

# Signatures on a parsed TLS ClientHello whose server name no app claims (sig_tls.py).
HELLO_SIGNATURES: dict[str, sig_tls.HelloSignature] = {
    "tor": sig_tls.tor_link,
}

# Signatures on the server certificate of a TLS session whose ClientHello named no server.
CERTIFICATE_SIGNATURES: dict[str, sig_tls.CertificateSignature] = {
    "anydesk": sig_tls.anydesk_certificate,
}

KNOWN_SIGNATURES = (frozenset(SIGNATURES) | frozenset(TWO_WAY_SIGNATURES) | frozenset(HELLO_SIGNATURES)
                    | frozenset(EXCHANGE_SIGNATURES) | frozenset(CERTIFICATE_SIGNATURES))


def check_registry_matches(implemented: frozenset[str], vocabulary: Iterable[str]) -> None:
    """Raises unless the classifier implements exactly the signature names a policy may use."""
    wanted = frozenset(vocabulary)
    if implemented != wanted:
        raise RuntimeError(
            "classify/signatures.py and SIGNATURE_NAMES in policy/model.py disagree: "
            f"named but not implemented: {sorted(wanted - implemented)}; "
            f"implemented but not named: {sorted(implemented - wanted)}"
        )


# At import, so a signature added on one side only fails every test and every start.
check_registry_matches(KNOWN_SIGNATURES, SIGNATURE_NAMES)
