"""Signatures on a ClientHello's shape (sig_tls.py): Tor's link handshake, never a real site's."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Raw

from gatewayd.classify.engine import Classifier
from gatewayd.classify.sig_tls import tor_link
from gatewayd.classify.tables import ClassifierTables
from gatewayd.classify.tls import TlsClientHello
from gatewayd.lab import quic_initial

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_catalog_apps import CLIENT, SERVER, builtin_apps, decide, teach_youku_address


def tor_hello(name: str, alpn: tuple[str, ...] = ()) -> TlsClientHello:
    return TlsClientHello(name, alpn, 0x0303)


@pytest.mark.parametrize("name", [
    # the shape of crypto_random_hostname(4, 25, "www.", ".com"): base32 (a-z, 2-7) between
    "www.q4cyamnc6mtokjurvdclt.com", "www.t3i3ru.com", "www.a2b3.com", "www.gfu7hbxpfp.com",
])
def test_tor_fake_server_names(name: str) -> None:
    assert tor_link(tor_hello(name))


@pytest.mark.parametrize("name,alpn", [
    ("www.q4cyamnc6mtokjurvdclt.com", ("h2", "http/1.1")),  # a browser's hello: ALPN
    ("www.google.com", ()), ("www.html5test.com", ()), ("www.web2.com", ()),  # real names, one digit at most
    ("www.q4cyamnc6mtokjurvdclt.net", ()), ("q4cyamnc6mtokjurvdclt.com", ()), ("www.q4cy0mnc6mtokjurvdclt.com", ()),
    ("www.q4c.com", ()), ("www." + "a2" * 13 + ".com", ()), ("www.ab23.cn", ()),
])
def test_not_tor(name: str, alpn: tuple[str, ...]) -> None:
    assert not tor_link(tor_hello(name, alpn))


def tls_flow_without_alpn(name: str, sport: int) -> list[bytes]:
    hello = quic_initial.client_hello(name, alpn=())
    record = b"\x16\x03\x01" + struct.pack("!H", len(hello)) + hello
    return [bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=443, flags="S", seq=1000)),
            bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=443, flags="PA", seq=1001, ack=1)
                  / Raw(record))]


def classifier() -> Classifier:
    return Classifier(ClassifierTables.build(builtin_apps()), dns_flow_takes_queried_app=False)


def test_classifier_names_a_tor_link() -> None:
    decision = decide(classifier(), tls_flow_without_alpn("www.e6r5p57kbafwrxj3plz.com", 41000))
    assert (decision.app, decision.method, decision.evidence) == ("tor", "signature", "tor")
    assert "sni=www.e6r5p57kbafwrxj3plz.com" in decision.details
    decision = decide(classifier(), tls_flow_without_alpn("www.html5test.com", 41001))
    assert (decision.app, decision.method) == ("unknown", "tls-sni")


def test_an_address_dns_taught_beats_the_shape() -> None:
    engine = classifier()
    syn, hello = tls_flow_without_alpn("www.e6r5p57kbafwrxj3plz.com", 41002)
    assert engine.on_packet(syn, 9.0).decision is None  # address not known yet: queued
    teach_youku_address(engine, 33335, 9)
    decision = engine.on_packet(hello, 11.0).decision
    assert decision is not None and (decision.app, decision.method) == ("youku", "dns-learned")
