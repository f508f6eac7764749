"""Mail upgraded with STARTTLS is named as its TLS variant (smtps, imaps, pops), plain sessions stay plain."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Raw

from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.sig_services import starttls_command
from gatewayd.classify.tables import ClassifierTables

sys.path.insert(0, str(Path(__file__).parent))
from test_classify_catalog_apps import CLIENT, SERVER, builtin_apps

GREETINGS = {25: b"220 mail.example.net ESMTP Postfix\r\n", 143: b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
             110: b"+OK POP3 server ready <1896.697170952@mail.example.net>\r\n"}


def mail_session(port: int, client_lines: list[bytes], sport: int) -> list[bytes]:
    """SYN, SYN-ACK, the server's greeting, then each client command with a short server reply."""
    packets = [bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=port, flags="S", seq=100)),
               bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=port, dport=sport, flags="SA", seq=500, ack=101)),
               bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=port, dport=sport, flags="PA", seq=501, ack=101)
                     / Raw(GREETINGS[port]))]
    seq = 101
    for line in client_lines:
        packets.append(bytes(IP(src=CLIENT, dst=SERVER) / TCP(sport=sport, dport=port, flags="PA", seq=seq, ack=600)
                             / Raw(line)))
        seq += len(line)
        packets.append(bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=port, dport=sport, flags="PA", seq=600, ack=seq)
                             / Raw(b"250 OK\r\n" if port == 25 else b"a OK\r\n")))
    return packets


def first_decision(packets: list[bytes], max_packets: int = 8) -> tuple[Decision, int]:
    classifier = Classifier(ClassifierTables.build(builtin_apps()), max_packets=max_packets,
                            dns_flow_takes_queried_app=False)
    for number, packet in enumerate(packets, 1):
        decision = classifier.on_packet(packet, 10.0 + number * 0.01).decision
        if decision is not None:
            return decision, number
    raise AssertionError("no decision")


@pytest.mark.parametrize("port,lines,app,evidence", [
    (25, [b"EHLO client.example.org\r\n", b"STARTTLS\r\n"], "smtps", "smtp+starttls"),
    (143, [b"a1 CAPABILITY\r\n", b"a2 starttls\r\n"], "imaps", "imap+starttls"),
    (110, [b"CAPA\r\n", b"STLS\r\n"], "pops", "pop3+starttls"),
    (25, [b"EHLO client.example.org\r\n", b"MAIL FROM:<a@example.org>\r\n"], "smtp", "smtp"),
    (143, [b"a1 LOGIN user secret\r\n"], "imap", "imap"),
    (110, [b"USER alice\r\n"], "pop3", "pop3"),
])
def test_the_client_command_after_the_greeting_decides(port: int, lines: list[bytes], app: str, evidence: str) -> None:
    decision, number = first_decision(mail_session(port, lines, 42000))
    assert (decision.app, decision.method, decision.evidence) == (app, "signature", evidence)
    assert number == 3 + 2 * len(lines) - 1  # decided on the deciding command itself, not later


def test_a_session_that_never_upgrades_within_the_budget_ends_plain() -> None:
    lines = [b"EHLO client.example.org\r\n"] * 5
    decision, number = first_decision(mail_session(25, lines, 42001), max_packets=8)
    assert (decision.app, decision.evidence, number) == ("smtp", "smtp", 8)


def test_starttls_command_parser() -> None:
    assert starttls_command("smtp", b"starttls\r\n") is True
    assert starttls_command("smtp", b"STARTTLS") is None  # the rest of the line is still to come
    assert starttls_command("smtp", b"HELO x\r\n") is None
    assert starttls_command("smtp", b"STARTTLSX\r\n") is False
    assert starttls_command("imap", b"STARTTLS\r\n") is False  # IMAP commands carry a tag
    assert starttls_command("imap", b"x1 STARTTLS\r\n") is True
    assert starttls_command("pop3", b"STLS\r\n") is True and starttls_command("pop3", b"QUIT\r\n") is False
