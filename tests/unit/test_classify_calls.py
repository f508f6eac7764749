"""Calls over STUN/TURN named by their app, and Agora's SD-RTN, on messages built from each format."""

from __future__ import annotations

import struct

import pytest
from scapy.all import IP, TCP, UDP, Raw
from scapy.layers.tls.all import TLS, ServerName, TLS_Ext_ServerName, TLSClientHello

from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.sig_calls import (
    sd_rtn,
    software_product,
    stun_googlecall,
    stun_names,
    stun_zoom,
)
from gatewayd.classify.signatures import SIGNATURES, TWO_WAY_SIGNATURES
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.app_packets import (
    STUN_BINDING_REQUEST,
    STUN_USERNAME,
    TURN_ALLOCATE_REQUEST,
    ice_controlling,
    realm,
    requested_transport_udp,
    software,
    stun_message,
)
from gatewayd.policy.applications import load_catalog

CLIENT, OTHER_CLIENT = "192.0.2.40", "192.0.2.41"
RELAY = "198.51.100.77"  # no app owns it


def builtin_classifier(max_packets: int = 8) -> Classifier:
    issues: list[object] = []
    catalog = load_catalog(None, issues)
    assert not issues
    return Classifier(ClassifierTables.build(catalog.values()), max_packets=max_packets)


def udp(payload: bytes, client: str = CLIENT, server: str = RELAY, sport: int = 50000, dport: int = 3478) -> bytes:
    return bytes(IP(src=client, dst=server) / UDP(sport=sport, dport=dport) / Raw(payload))


def agora_hello(name: bytes, marker: int = 0x21, field: bytes = b"\x04SNI") -> bytes:
    """Agora SD-RTN's opening datagram: a 12-byte head (byte 6 = 0x21), "\\x04SNI", length, 0, the name."""
    head = bytes((0x00, 0x30, 0x00, 0x01, 0x00, 0x00, marker, 0x00, 0x12, 0x34, 0x56, 0x78))
    return head + field + struct.pack("!H", len(name)) + b"\x00" + name + bytes(8)


def test_vendor_attributes_name_zoom_and_google_calls() -> None:
    zoom = stun_message(STUN_BINDING_REQUEST, [(0x0103, bytes(4)), ice_controlling()])
    google = stun_message(STUN_BINDING_REQUEST, [(STUN_USERNAME, b"ab:cd"), (0xFF03, bytes(8))])
    plain = stun_message(STUN_BINDING_REQUEST, [ice_controlling(), (STUN_USERNAME, b"ab:cd")])
    assert stun_zoom(zoom, True) and not stun_zoom(google, True) and not stun_zoom(plain, True)
    assert stun_googlecall(google, True) and not stun_googlecall(zoom, True) and not stun_googlecall(plain, True)
    # The attribute type only counts inside a STUN message (magic cookie).
    assert not stun_zoom(b"\x00\x01\x00\x08" + bytes(16) + b"\x01\x03\x00\x04" + bytes(4), True)


def test_realm_and_software_are_read_only_when_well_formed() -> None:
    message = stun_message(TURN_ALLOCATE_REQUEST, [requested_transport_udp(), realm("Turn3.Signal.org"),
                                                   software("Telegram/10.2 (Android)")])
    assert stun_names(message) == ("turn3.signal.org", "telegram")
    assert stun_names(stun_message(STUN_BINDING_REQUEST, [realm("not a host name")]))[0] is None
    assert stun_names(stun_message(STUN_BINDING_REQUEST, [realm("localhost")]))[0] is None
    assert stun_names(b"not stun at all, twenty bytes or more") == (None, None)
    assert software_product(b"Coturn-4.6.2 'Gorst'") == "coturn"
    assert software_product(b"zoomer2000") == "zoomer2000" and software_product(b"4.6 build") is None


def test_agora_sd_rtn_opening_message() -> None:
    assert sd_rtn(agora_hello(b"ap-web-1.agora.io"), True)
    assert not sd_rtn(agora_hello(b"ap-web-1.agora.io", marker=0x20), True)
    assert not sd_rtn(agora_hello(b"ap-web-1.agora.io", field=b"\x04SNJ"), True)
    assert not sd_rtn(agora_hello(b"no name here"), True)
    assert not sd_rtn(agora_hello(b"ap.agora.io")[:25], True)  # the name runs past the datagram


def test_agora_sd_rtn_is_named_on_its_first_packet() -> None:
    decision = builtin_classifier().on_packet(udp(agora_hello(b"edge.sd-rtn.example.com"), dport=4700), 1.0).decision
    assert decision == Decision("sd-rtn", "signature", "sd_rtn")


@pytest.mark.parametrize(("attributes", "app"), [
    ([requested_transport_udp(), realm("turn1.signal.org")], "signalvoip"),  # Signal's TURN realm: its call app
    ([requested_transport_udp(), realm("zoom.us")], "zoom"),  # Zoom has no separate call app
    ([requested_transport_udp(), realm("turn.facebook")], "facebookvoip"),  # Meta's brand TLD: a Messenger call
    ([requested_transport_udp(), software("Telegram Desktop 5.1")], "telegramvoip"),
    ([(0x0103, bytes(4))], "zoom"),
    ([(0xFF03, bytes(8)), ice_controlling()], "googlecall"),
])
def test_the_message_names_the_call_on_its_first_packet(attributes: list[tuple[int, bytes]], app: str) -> None:
    decision = builtin_classifier().on_packet(udp(stun_message(TURN_ALLOCATE_REQUEST, attributes)), 1.0).decision
    assert decision is not None and decision.app == app and decision.method == "signature"


@pytest.mark.parametrize("attributes", [
    [requested_transport_udp(), software("Coturn-4.6.2")],  # a relay server's software names no app
    [requested_transport_udp(), realm("turn.example.net")],  # a realm no app owns
    [requested_transport_udp(), software("Skype")],  # an app id, but not one that makes calls here
])
def test_a_message_naming_no_calling_app_stays_generic_stun(attributes: list[tuple[int, bytes]]) -> None:
    classifier = builtin_classifier(max_packets=3)
    message = stun_message(TURN_ALLOCATE_REQUEST, attributes)
    decisions = [classifier.on_packet(udp(message), 1.0 + index).decision for index in range(3)]
    assert decisions == [None, None, Decision("stun", "signature", "stun")]


def test_a_relay_is_named_by_the_same_clients_tls_server_name() -> None:
    classifier = builtin_classifier(max_packets=3)
    server_name = TLS_Ext_ServerName(servernames=[ServerName(servername=b"zoomfra1mmr.zoom.us")])
    hello = bytes(TLS(msg=[TLSClientHello(ext=[server_name])]))
    syn = IP(src=CLIENT, dst=RELAY) / TCP(sport=41000, dport=443, flags="S", seq=100)
    data = IP(src=CLIENT, dst=RELAY) / TCP(sport=41000, dport=443, flags="PA", seq=101, ack=1) / Raw(hello)
    assert classifier.on_packet(bytes(syn), 1.0).decision is None
    assert classifier.on_packet(bytes(data), 1.1).decision == Decision("zoom", "tls-sni", "zoomfra1mmr.zoom.us")
    binding = stun_message(STUN_BINDING_REQUEST, [ice_controlling()])
    media = classifier.on_packet(udp(binding, dport=8801), 2.0).decision
    assert media == Decision("zoom", "signature", "stun") and media.details == "server-name"
    # Another client never named that server: its STUN there (not to the call's endpoint) is only "some call".
    others = [classifier.on_packet(udp(binding, client=OTHER_CLIENT, dport=8802), 3.0 + n).decision for n in range(3)]
    assert others == [None, None, Decision("stun", "signature", "stun")]


ZOOM_AUDIO, ZOOM_VIDEO, ZOOM_SCREEN_SHARE, ZOOM_RTCP = 15, 16, 13, 33
ZOOM_RTP_OFFSETS = {ZOOM_AUDIO: 19, ZOOM_VIDEO: 24, ZOOM_SCREEN_SHARE: 27, ZOOM_RTCP: 16}


def rtp_packet(payload_type: int = 112, size: int = 120) -> bytes:
    """RFC 3550: V=2, no padding/extension/CSRC, the payload type, sequence, timestamp, SSRC, payload."""
    return bytes((0x80, payload_type)) + struct.pack("!HII", 4321, 160 * 77, 0x1234ABCD) + bytes(size)


def rtcp_receiver_report() -> bytes:
    """RFC 3550 6.4.2: V=2, one report block, type 201, length 7 (32 bytes in all)."""
    return bytes((0x81, 201)) + struct.pack("!H", 7) + bytes(28)


def zoom_media_datagram(towards_zoom: bool, media_type: int, inner: bytes, direction: int | None = None) -> bytes:
    """Zoom's SFU header (type 5, sequence, 32 bits, direction 0 towards Zoom / 4 from it), then its media
    encapsulation (type, 8 bytes, sequence, timestamp, the type's own fields) up to the RTP/RTCP packet."""
    direction_byte = (0x00 if towards_zoom else 0x04) if direction is None else direction
    sfu = bytes((0x05,)) + struct.pack("!HI", 812, 0) + bytes((direction_byte,))
    media = bytes((media_type,)) + bytes(8) + struct.pack("!HI", 99, 123456)
    media += bytes(ZOOM_RTP_OFFSETS[media_type] - len(media))
    return sfu + media + inner


def test_zoom_media_encapsulation_carries_rtp_or_rtcp() -> None:
    match = TWO_WAY_SIGNATURES["zoom_media"][0]
    for media_type in (ZOOM_AUDIO, ZOOM_VIDEO, ZOOM_SCREEN_SHARE):
        assert match(zoom_media_datagram(True, media_type, rtp_packet()), True)
        assert match(zoom_media_datagram(False, media_type, rtp_packet()), False)
    assert match(zoom_media_datagram(True, ZOOM_RTCP, rtcp_receiver_report()), True)


@pytest.mark.parametrize(("payload", "from_client"), [
    (zoom_media_datagram(False, ZOOM_AUDIO, rtp_packet()), True),  # "from Zoom" sent by the client
    (zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet()), False),  # "towards Zoom" sent by the server
    (zoom_media_datagram(True, ZOOM_AUDIO, b"\x40" + rtp_packet()[1:]), True),  # RTP version 1
    (zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet(payload_type=72)), True),  # an RTCP type where RTP is
    (zoom_media_datagram(True, ZOOM_RTCP, rtp_packet()), True),  # RTP where the type promises RTCP
    (zoom_media_datagram(True, ZOOM_RTCP, bytes((0x81, 201)) + struct.pack("!H", 40) + bytes(28)), True),  # too long
    (b"\x04" + zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet())[1:], True),  # not the SFU media type
    (zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet())[:22], True),  # cut inside the headers
], ids=["client-says-from-zoom", "server-says-towards-zoom", "rtp-version-1", "rtcp-type-in-rtp",
        "rtp-for-rtcp", "rtcp-too-long", "sfu-type-4", "truncated"])
def test_zoom_media_rejects_what_the_encapsulation_excludes(payload: bytes, from_client: bool) -> None:
    assert not TWO_WAY_SIGNATURES["zoom_media"][0](payload, from_client)


def test_zoom_media_to_a_server_outside_the_listed_networks_is_zoom_once_both_sides_show_it() -> None:
    classifier = builtin_classifier()
    up = udp(zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet()), sport=53000, dport=8801)
    down = bytes(IP(src=RELAY, dst=CLIENT) / UDP(sport=8801, dport=53000)
                 / Raw(zoom_media_datagram(False, ZOOM_VIDEO, rtp_packet(size=900))))
    assert classifier.on_packet(up, 1.0).decision is None  # one side alone is not enough
    assert classifier.on_packet(down, 1.1).decision == Decision("zoom", "signature", "zoom_media")
    # The client's packets alone, however many, never make it Zoom.
    lonely = [classifier.on_packet(udp(zoom_media_datagram(True, ZOOM_AUDIO, rtp_packet()), sport=53001, dport=8802),
                                   2.0 + n).decision for n in range(8)]
    assert lonely[-1] is not None and lonely[-1].app != "zoom"


def zoom_p2p_opening(address: bytes = b"192.0.2.40", identifier: bytes = b"6ba7b810-9dad-11d1-80b4-00c04fd430c8",
                     tail: bytes = bytes(4)) -> bytes:
    """A peer-to-peer Zoom call's opening: 1F 02 01 and the rest of a 24-byte head, the sender's address
    as text and an identifier, each behind its 32-bit length, then four zero bytes."""
    head = b"\x1f\x02\x01" + bytes(range(21))
    return (head + struct.pack("!I", len(address)) + address + struct.pack("!I", len(identifier)) + identifier
            + tail)


def test_zoom_peer_to_peer_opening() -> None:
    match = SIGNATURES["zoom_p2p"]
    assert match(zoom_p2p_opening(), True)
    assert match(zoom_p2p_opening(address=b"2001:db8::40"), False)


@pytest.mark.parametrize("payload", [
    zoom_p2p_opening(tail=b"\x00\x00\x00\x01"),  # not the four zero bytes
    zoom_p2p_opening() + bytes(4),  # lengths that do not add up to the datagram
    zoom_p2p_opening()[:-6] + bytes(4),  # ... nor when it is shorter
    zoom_p2p_opening(address=b"not-an-ip!"),
    zoom_p2p_opening(address=b"deadbeefcafe"),  # hex, but no address
    b"\x1f\x02\x02" + zoom_p2p_opening()[3:],  # another opening
])
def test_zoom_peer_to_peer_opening_rejects_what_the_format_excludes(payload: bytes) -> None:
    assert not SIGNATURES["zoom_p2p"](payload, True)


def test_a_zoom_peer_to_peer_call_and_its_media_are_zoom() -> None:
    classifier = builtin_classifier(max_packets=3)
    peer = "198.51.100.91"
    opening = classifier.on_packet(udp(zoom_p2p_opening(), server=peer, sport=52100, dport=52200), 1.0)
    assert opening.decision == Decision("zoom", "signature", "zoom_p2p")
    # The call's media from the same socket, in a framing of its own, to the peer's other port.
    media = [classifier.on_packet(udp(bytes(range(90)), server=peer, sport=52100, dport=52201), 2.0 + n).decision
             for n in range(3)]
    assert media[-1] == Decision("zoom", "address", "call-endpoint")


def tls_hello_to(classifier: Classifier, server: str, server_name: str, sport: int) -> Decision | None:
    extension = TLS_Ext_ServerName(servernames=[ServerName(servername=server_name.encode())])
    hello = bytes(TLS(msg=[TLSClientHello(ext=[extension])]))
    syn = IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags="S", seq=100)
    data = IP(src=CLIENT, dst=server) / TCP(sport=sport, dport=443, flags="PA", seq=101, ack=1) / Raw(hello)
    classifier.on_packet(bytes(syn), 1.0)
    return classifier.on_packet(bytes(data), 1.1).decision


@pytest.mark.parametrize(("server_name", "app"), [
    ("api.meeting.qq.com", "tencentmeeting"),  # Tencent's RTC: media by address and port, no STUN
    ("static.dingtalk.com", "dingtalk"),
    ("g.whatsapp.net", "whatsappcall"),  # an app's calls take its voice-video sub-app
])
def test_private_media_to_the_server_the_client_named_is_that_apps(server_name: str, app: str) -> None:
    classifier = builtin_classifier(max_packets=3)
    hello = tls_hello_to(classifier, RELAY, server_name, 41010)
    assert hello is not None and hello.evidence == server_name
    media = bytes(range(7, 107))  # a vendor's own media framing: nothing any signature knows
    decisions = [classifier.on_packet(udp(media, dport=8000), 2.0 + n).decision for n in range(3)]
    assert decisions == [None, None, Decision(app, "address", "named-server")]
    # Another client never named that server: the same datagrams (to another port than the call's) stay unknown.
    others = [classifier.on_packet(udp(media, client=OTHER_CLIENT, dport=8001), 3.0 + n).decision for n in range(3)]
    assert others[2] is not None and others[2].app == "unknown"


@pytest.mark.parametrize(("server_name", "dport"), [
    ("www.youku.com", 8000),  # a video site's server: not a calling app
    ("api.meeting.qq.com", 53),  # DNS to it is DNS, whatever else it serves
])
def test_udp_to_a_named_server_is_media_only_for_calling_apps(server_name: str, dport: int) -> None:
    classifier = builtin_classifier(max_packets=3)
    assert tls_hello_to(classifier, RELAY, server_name, 41020) is not None
    decisions = [classifier.on_packet(udp(bytes(range(60)), dport=dport), 2.0 + n).decision for n in range(3)]
    assert decisions[2] is not None and decisions[2].evidence != "named-server"


def test_peer_to_peer_media_on_a_calls_socket_takes_the_calls_app() -> None:
    # Zoom's client asks Zoom's relay (its published network, udp/3478) from one local socket,
    # then sends the call's media straight to the peer from that socket, in a framing of its own.
    classifier = builtin_classifier(max_packets=3)
    zoom_relay, peer = "206.247.87.20", "198.51.100.88"
    opening = classifier.on_packet(udp(b"\x00\x01\x00\x00" + bytes(16), server=zoom_relay, sport=39065), 1.0)
    assert opening.decision is not None and opening.decision.app == "zoom"
    media = bytes(range(40))  # no format anyone knows
    same_socket = [classifier.on_packet(udp(media, server=peer, sport=39065, dport=46757), 2.0 + n).decision
                   for n in range(3)]
    assert same_socket == [None, None, Decision("zoom", "address", "call-endpoint")]
    # Another socket of the same host to another peer is not that call.
    other_socket = [classifier.on_packet(udp(media, server="198.51.100.89", sport=39066, dport=46758),
                                         3.0 + n).decision for n in range(3)]
    assert other_socket[2] is not None and other_socket[2].app == "unknown"


def framed(message: bytes) -> bytes:
    """RFC 4571 framing, as ICE over TCP (RFC 6544) carries STUN: a 16-bit length, then the message."""
    return struct.pack("!H", len(message)) + message


def test_stun_over_tcp_in_rfc4571_framing_is_read_like_udp() -> None:
    teams = stun_message(STUN_BINDING_REQUEST, [(STUN_USERNAME, b"ab:cd"), (0x8054, b"\x00\x00\x00\x01"),
                                               (0x8070, b"\x00\x00\x00\x03")])  # MS-ICE2 attributes
    two_in_one_segment = framed(teams) + framed(stun_message(STUN_BINDING_REQUEST, [ice_controlling()]))
    assert SIGNATURES["stun"](framed(teams), True) and SIGNATURES["stun_msteams"](two_in_one_segment, True)
    assert not SIGNATURES["stun"](struct.pack("!H", len(teams) + 4) + teams, True)  # the frame overruns
    classifier = builtin_classifier()
    syn = IP(src=CLIENT, dst=RELAY) / TCP(sport=41588, dport=42000, flags="S", seq=100)
    data = IP(src=CLIENT, dst=RELAY) / TCP(sport=41588, dport=42000, flags="PA", seq=101, ack=1) / Raw(framed(teams))
    assert classifier.on_packet(bytes(syn), 1.0).decision is None
    decision = classifier.on_packet(bytes(data), 1.1).decision
    assert decision is not None and (decision.app, decision.evidence) == ("skype_teamscall", "stun_msteams")
