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
