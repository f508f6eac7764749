"""The server certificate names the app when the ClientHello named no server (AnyDesk), on
certificates and TLS messages built from their formats (RFC 5280, RFC 5246), never cut from a capture."""

from __future__ import annotations

import pytest
from scapy.all import IP, TCP, Raw

from gatewayd.classify.certificates import CertificateNames, server_certificate_names
from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.sig_tls import anydesk_certificate
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.app_packets import tls_client_hello_without_name, tls_server_certificate_flight
from gatewayd.lab.certificate_factory import made_certificate
from gatewayd.policy.applications import load_catalog

CLIENT, SERVER = "192.0.2.60", "203.0.113.61"  # no app owns the server
ANYDESK_CA = (("philandro Software GmbH", "AnyNet Root CA"), "AnyNet Relay")
PUBLIC_CA = (("Example Trust Services", "Example TLS CA 1"), "relay.example.net")


def certificate(issuer: tuple[str, str], subject_cn: str) -> bytes:
    """A DER certificate with that issuer (organisation, common name) and subject common name."""
    return made_certificate(issuer[0], issuer[1], subject_cn).der


def test_the_names_are_read_from_the_certificate_message() -> None:
    flight = tls_server_certificate_flight(certificate(*ANYDESK_CA))
    expected = CertificateNames("AnyNet Root CA", "philandro Software GmbH", "AnyNet Relay", "philandro Software GmbH")
    assert server_certificate_names(flight) == expected
    # A segment that cuts the certificate after its subject still names it.
    cut = flight.index(b"AnyNet Relay") + len(b"AnyNet Relay")
    assert server_certificate_names(flight[:cut]) == expected
    assert server_certificate_names(flight[:cut - 4]) is None  # the subject itself cut: nothing
    assert server_certificate_names(b"HTTP/1.1 200 OK\r\n\r\n") is None
    assert server_certificate_names(b"\x16\x03\x03\x00\x04\x0e\x00\x00\x00") is None  # ServerHelloDone only


@pytest.mark.parametrize(("issuer", "subject", "expected"), [
    (*ANYDESK_CA, True),
    (("philandro Software GmbH", "Another CA"), "AnyNet Relay", False),  # not AnyDesk's CA
    (*PUBLIC_CA, False),
])
def test_anydesk_is_named_by_its_private_ca(issuer: tuple[str, str], subject: str, expected: bool) -> None:
    names = server_certificate_names(tls_server_certificate_flight(certificate(issuer, subject)))
    assert names is not None and anydesk_certificate(names) is expected


def tcp(payload: bytes, from_client: bool, seq: int, ack: int, flags: str = "PA") -> bytes:
    if from_client:
        return bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=43535, dport=443, flags=flags, seq=seq, ack=ack)
                     / Raw(payload))
    return bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=443, dport=43535, flags=flags, seq=seq, ack=ack)
                 / Raw(payload))


@pytest.mark.parametrize(("issuer", "subject", "app"), [(*ANYDESK_CA, "anydesk"), (*PUBLIC_CA, None)])
def test_a_hello_without_a_name_is_decided_by_the_servers_certificate(issuer: tuple[str, str], subject: str,
                                                                      app: str | None) -> None:
    issues: list[object] = []
    classifier = Classifier(ClassifierTables.build(load_catalog(None, issues).values()))
    assert not issues
    hello = tls_client_hello_without_name()
    flight = tls_server_certificate_flight(certificate(issuer, subject))
    syn = bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=43535, dport=443, flags="S", seq=100))
    assert classifier.on_packet(syn, 1.0).decision is None
    assert classifier.on_packet(tcp(hello, True, 101, 501), 1.1).decision is None  # no name: wait
    decision = classifier.on_packet(tcp(flight, False, 501, 101 + len(hello)), 1.2).decision
    if app is None:
        assert decision is None  # a certificate no signature knows leaves the flow undecided
    else:
        assert decision == Decision(app, "signature", "anydesk", details="issuer=AnyNet Root CA")


@pytest.mark.parametrize(("subject", "app"), [("upload.youtube.com", "youtubeupload"), ("*.dropbox.com", "dropbox"),
                                              ("relay.example.net", None)])
def test_a_server_heard_before_its_client_is_named_by_its_certificates_host_name(subject: str,
                                                                                app: str | None) -> None:
    """One direction of the flow only (the client's hello never seen): the name the CA vouched for."""
    issues: list[object] = []
    classifier = Classifier(ClassifierTables.build(load_catalog(None, issues).values()))
    flight = tls_server_certificate_flight(certificate(PUBLIC_CA[0], subject))
    syn_ack = bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=443, dport=43535, flags="SA", seq=500, ack=101))
    assert classifier.on_packet(syn_ack, 1.0).decision is None
    decision = classifier.on_packet(tcp(flight, False, 501, 101), 1.1).decision
    if app is None:
        assert decision is None
    else:
        assert decision == Decision(app, "tls-cert", subject, details="issuer=Example TLS CA 1")
