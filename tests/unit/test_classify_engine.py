"""Classifier (gatewayd.classify.engine) on flows crafted with scapy."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP, IPv6, Raw
from scapy.layers.tls.all import TLS, ServerName, TLS_Ext_ServerName, TLSClientHello

from gatewayd.classify.engine import Classifier, Decision, LearnedAddress
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.model import Application, PortMatch

CLIENT = "192.0.2.20"
SERVER = "203.0.113.80"


def catalog() -> list[Application]:
    return [
        Application(id="dingtalk", name="DingTalk", category="im", domains=("dingtalk.com",)),
        Application(id="youku", name="Youku", category="video", domains=("youku.com", "*.ykimg.com")),
        Application(id="bittorrent", name="BitTorrent", category="p2p", signatures=("bittorrent",)),
        Application(id="ssh", name="SSH", category="remote", signatures=("ssh",)),
        Application(id="rdp", name="RDP", category="remote", ports=(PortMatch("tcp", 3389, 3389),)),
        Application(id="dns", name="DNS", category="dns", ports=(PortMatch("udp", 53, 53), PortMatch("tcp", 53, 53))),
        Application(id="corp-erp", name="ERP", category="erp-crm-oa",
                    networks=(ipaddress.ip_network("198.51.100.0/24"),), ports=(PortMatch("tcp", 8443, 8443),)),
        Application(id="office-lan", name="LAN", category="office", networks=(ipaddress.ip_network("198.51.0.0/16"),)),
        Application(id="wireguard", name="WireGuard", category="vpn", signatures=("wireguard",)),
    ]


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(ClassifierTables.build(catalog()), max_packets=8)


def tcp(src: str, dst: str, sport: int, dport: int, flags: str, seq: int = 0, payload: bytes = b"") -> bytes:
    packet = IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, seq=seq)
    return bytes(packet / Raw(payload)) if payload else bytes(packet)


def handshake(sport: int, dport: int, server: str = SERVER) -> list[bytes]:
    return [tcp(CLIENT, server, sport, dport, "S", 1000), tcp(server, CLIENT, dport, sport, "SA", 9000),
            tcp(CLIENT, server, sport, dport, "A", 1001)]


def client_hello(name: str) -> bytes:
    server_name = TLS_Ext_ServerName(servernames=[ServerName(servername=name.encode())])
    return bytes(TLS(msg=[TLSClientHello(ext=[server_name])]))


def feed(classifier: Classifier, packets: list[bytes], start: float = 100.0) -> list[Decision]:
    decisions = []
    for index, packet in enumerate(packets):
        outcome = classifier.on_packet(packet, start + index * 0.01)
        if outcome.decision is not None:
            decisions.append(outcome.decision)
    return decisions


def test_tls_sni_decides_dingtalk(classifier: Classifier) -> None:
    hello = client_hello("static.dingtalk.com")
    decisions = feed(classifier, handshake(40000, 443) + [tcp(CLIENT, SERVER, 40000, 443, "PA", 1001, hello)])
    assert decisions == [Decision("dingtalk", "tls-sni", "static.dingtalk.com")]


def test_tls_hello_split_over_segments(classifier: Classifier) -> None:
    hello = client_hello("www.youku.com")
    parts = [hello[:10], hello[10:60], hello[60:]]
    packets = handshake(40001, 443)
    seq = 1001
    outcomes = [classifier.on_packet(p, 1.0) for p in packets]
    for part in parts:
        outcomes.append(classifier.on_packet(tcp(CLIENT, SERVER, 40001, 443, "PA", seq, part), 1.0))
        seq += len(part)
    decisions = [o.decision for o in outcomes if o.decision]
    assert decisions == [Decision("youku", "tls-sni", "www.youku.com")]
    assert outcomes[-1].decision is not None  # decided by the segment that completed the hello


def test_retransmitted_segment_does_not_corrupt_stream(classifier: Classifier) -> None:
    hello = client_hello("www.youku.com")
    packets = handshake(40002, 443) + [
        tcp(CLIENT, SERVER, 40002, 443, "PA", 1001, hello[:30]),
        tcp(CLIENT, SERVER, 40002, 443, "PA", 1001, hello[:30]),  # retransmission
        tcp(CLIENT, SERVER, 40002, 443, "PA", 1001, hello[:50]),  # overlapping, longer retransmission
        tcp(CLIENT, SERVER, 40002, 443, "PA", 1051, hello[50:]),
    ]
    assert feed(classifier, packets) == [Decision("youku", "tls-sni", "www.youku.com")]


def test_hello_on_the_final_handshake_ack(classifier: Classifier) -> None:
    """Data piggybacked on the handshake's last ACK starts at ISN + 1, like any first segment."""
    hello = client_hello("www.youku.com")
    packets = handshake(40020, 443)[:2] + [tcp(CLIENT, SERVER, 40020, 443, "A", 1001, hello)]
    assert feed(classifier, packets) == [Decision("youku", "tls-sni", "www.youku.com")]


def test_hello_in_a_fast_open_syn(classifier: Classifier) -> None:
    """TCP Fast Open: the SYN itself carries the hello; the SYN's own sequence number comes before its data."""
    hello = client_hello("www.youku.com")
    whole = [tcp(CLIENT, SERVER, 40021, 443, "S", 5000, hello)]
    assert feed(classifier, whole) == [Decision("youku", "tls-sni", "www.youku.com")]
    split = [tcp(CLIENT, SERVER, 40022, 443, "S", 5000, hello[:40]),
             tcp(SERVER, CLIENT, 443, 40022, "SA", 9000),
             tcp(CLIENT, SERVER, 40022, 443, "PA", 5001 + 40, hello[40:])]
    assert feed(classifier, split) == [Decision("youku", "tls-sni", "www.youku.com")]


def test_fast_open_syn_sent_again_is_a_retransmission(classifier: Classifier) -> None:
    hello = client_hello("www.youku.com")
    packets = [tcp(CLIENT, SERVER, 40023, 443, "S", 5000, hello[:40]),
               tcp(CLIENT, SERVER, 40023, 443, "S", 5000, hello[:40]),
               tcp(CLIENT, SERVER, 40023, 443, "PA", 5001 + 40, hello[40:])]
    assert feed(classifier, packets) == [Decision("youku", "tls-sni", "www.youku.com")]


def test_segment_ahead_of_a_gap_waits_for_the_missing_one(classifier: Classifier) -> None:
    hello = client_hello("www.youku.com")
    packets = handshake(40024, 443)
    outcomes = [classifier.on_packet(p, 1.0) for p in packets]
    outcomes.append(classifier.on_packet(tcp(CLIENT, SERVER, 40024, 443, "PA", 1001 + 60, hello[60:]), 1.0))
    assert outcomes[-1].decision is None
    outcomes.append(classifier.on_packet(tcp(CLIENT, SERVER, 40024, 443, "PA", 1001, hello[:60]), 1.0))
    assert outcomes[-1].decision == Decision("youku", "tls-sni", "www.youku.com")


def test_segments_out_of_order_without_a_syn(classifier: Classifier) -> None:
    """Live, the kernel queues no SYN: the first segment seen anchors the stream, later ones may come in any order."""
    request = b"GET /v/123 HTTP/1.1\r\nHost: v.youku.com\r\nAccept: */*\r\nUser-Agent: test\r\n\r\n"
    parts = [(7000, request[:10]), (7000 + 40, request[40:]), (7000 + 10, request[10:25]),
             (7000 + 20, request[20:40])]  # the last one overlaps the one before it
    decisions = []
    for seq, part in parts:
        outcome = classifier.on_packet(tcp(CLIENT, SERVER, 40025, 80, "PA", seq, part), 1.0, from_client=True)
        decisions.append(outcome.decision)
    assert decisions[:3] == [None, None, None]
    assert decisions[3] == Decision("youku", "http-host", "v.youku.com")


def test_held_segments_count_against_the_buffer_budget(classifier: Classifier) -> None:
    hello = client_hello("www.youku.com")
    packets = handshake(40026, 443) + [tcp(CLIENT, SERVER, 40026, 443, "PA", 1001 + 60, hello[60:])]
    feed(classifier, packets)
    assert classifier.buffered_bytes == len(hello) - 60


def test_unmatched_sni_decides_unknown(classifier: Classifier) -> None:
    packets = handshake(40003, 443) + [tcp(CLIENT, SERVER, 40003, 443, "PA", 1001, client_hello("nobody.example"))]
    assert feed(classifier, packets) == [Decision("unknown", "tls-sni", "nobody.example")]


def test_http_host(classifier: Classifier) -> None:
    request = b"GET /v/123 HTTP/1.1\r\nHost: V.YOUKU.com:80\r\nAccept: */*\r\n\r\n"
    packets = handshake(40004, 80) + [tcp(CLIENT, SERVER, 40004, 80, "PA", 1001, request)]
    assert feed(classifier, packets) == [Decision("youku", "http-host", "v.youku.com")]


def test_http_request_after_an_ack_with_link_padding_in_its_ip_length(classifier: Classifier) -> None:
    # A tap that counts Ethernet padding in the IP length shows the bare ACK with two zero
    # bytes at the very sequence number where the request starts.
    request = b"GET /v/1 HTTP/1.1\r\nHost: v.youku.com\r\n\r\n"
    packets = handshake(40005, 80)[:2] + [tcp(CLIENT, SERVER, 40005, 80, "A", 1001, b"\x00\x00"),
                                          tcp(CLIENT, SERVER, 40005, 80, "PA", 1001, request)]
    assert feed(classifier, packets) == [Decision("youku", "http-host", "v.youku.com")]


def test_dns_answer_teaches_address_then_flow_is_dns_learned(classifier: Classifier) -> None:
    response = IP(src="192.0.2.1", dst=CLIENT) / UDP(sport=53, dport=33333) / DNS(
        id=3, qr=1, qd=DNSQR(qname="www.youku.com"),
        an=[DNSRR(rrname="www.youku.com", type="CNAME", rdata="www.youku.com.w.kunlunno.com", ttl=300),
            DNSRR(rrname="www.youku.com.w.kunlunno.com", type="A", rdata="203.0.113.99", ttl=5),
            DNSRR(rrname="www.youku.com.w.kunlunno.com", type="AAAA", rdata="2001:db8::99", ttl=100000)])
    query = IP(src=CLIENT, dst="192.0.2.1") / UDP(sport=33333, dport=53) / DNS(id=3, qd=DNSQR(qname="www.youku.com"))
    first = classifier.on_packet(bytes(query), 10.0)
    assert first.decision is None and first.learned == []  # the query alone teaches nothing
    outcome = classifier.on_packet(bytes(response), 10.1)
    assert outcome.decision == Decision("youku", "dns", "www.youku.com")
    assert outcome.learned == [
        LearnedAddress(ipaddress.IPv4Address("203.0.113.99"), "youku", 30, "www.youku.com"),  # TTL clamped up
        LearnedAddress(ipaddress.IPv6Address("2001:db8::99"), "youku", 86400, "www.youku.com"),  # and down
    ]
    syn = classifier.on_packet(tcp(CLIENT, "203.0.113.99", 41000, 443, "S", 5), 11.0)
    assert syn.decision == Decision("youku", "dns-learned", "www.youku.com")
    assert classifier.on_packet(tcp(CLIENT, "203.0.113.99", 41000, 443, "PA", 6, b"x"), 11.1).decision is None
    # A SYN with payload (TFO) to a learned address is decided on that first packet too.
    six = IPv6(src="2001:db8::20", dst="2001:db8::99") / TCP(sport=41001, dport=443, flags="S") / Raw(b"data")
    assert classifier.on_packet(bytes(six), 12.0).decision.method == "dns-learned"
    # The learned entry expires with its (clamped) TTL.
    late = classifier.on_packet(tcp(CLIENT, "203.0.113.99", 41002, 443, "S", 5), 10.1 + 31)
    assert late.decision is None


def test_dns_flow_for_plain_name_is_dns(classifier: Classifier) -> None:
    response = IP(src="192.0.2.1", dst=CLIENT) / UDP(sport=53, dport=33334) / DNS(
        id=4, qr=1, qd=DNSQR(qname="example.org"), an=[DNSRR(rrname="example.org", type="A", rdata="192.0.2.4")])
    outcome = classifier.on_packet(bytes(response), 1.0)
    assert outcome.decision == Decision("dns", "dns", "example.org") and outcome.learned == []


def test_dns_over_tcp_split_response(classifier: Classifier) -> None:
    query = bytes(DNS(id=5, qd=DNSQR(qname="img.ykimg.com")))
    message = bytes(DNS(id=5, qr=1, qd=DNSQR(qname="img.ykimg.com"),
                        an=[DNSRR(rrname="img.ykimg.com", type="A", rdata="203.0.113.7", ttl=600)]))
    framed = len(message).to_bytes(2, "big") + message
    resolver = "192.0.2.1"
    packets = [tcp(CLIENT, resolver, 42000, 53, "S", 1), tcp(resolver, CLIENT, 53, 42000, "SA", 50),
               tcp(CLIENT, resolver, 42000, 53, "PA", 2, len(query).to_bytes(2, "big") + query),
               tcp(resolver, CLIENT, 53, 42000, "PA", 51, framed[:9]),
               tcp(resolver, CLIENT, 53, 42000, "PA", 60, framed[9:])]
    outcomes = [classifier.on_packet(p, 1.0) for p in packets]
    assert [o.decision for o in outcomes if o.decision] == [Decision("youku", "dns", "img.ykimg.com")]
    assert outcomes[-1].learned[0].address == ipaddress.IPv4Address("203.0.113.7")


def test_bittorrent_handshake_signature(classifier: Classifier) -> None:
    payload = b"\x13BitTorrent protocol" + bytes(8) + b"I" * 20 + b"P" * 20
    packets = handshake(40005, 51413) + [tcp(CLIENT, SERVER, 40005, 51413, "PA", 1001, payload)]
    assert feed(classifier, packets) == [Decision("bittorrent", "signature", "bittorrent")]


def test_bittorrent_dht_over_udp(classifier: Classifier) -> None:
    query = b"d1:ad2:id20:" + b"Q" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe"
    packet = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=6881, dport=6881) / Raw(query))
    assert classifier.on_packet(packet, 1.0).decision == Decision("bittorrent", "signature", "bittorrent")


def test_ssh_server_banner_first(classifier: Classifier) -> None:
    packets = handshake(40006, 2222) + [tcp(SERVER, CLIENT, 2222, 40006, "PA", 9001, b"SSH-2.0-OpenSSH_9.6\r\n")]
    assert feed(classifier, packets) == [Decision("ssh", "signature", "ssh")]


def test_give_up_after_max_packets(classifier: Classifier) -> None:
    packets = handshake(40007, 9999) + [tcp(CLIENT, SERVER, 40007, 9999, "PA", 1001 + i * 4, b"\x01\x02\x03\x04")
                                        for i in range(10)]
    outcomes = [classifier.on_packet(p, 1.0) for p in packets]
    decided_at = [i for i, o in enumerate(outcomes) if o.decision]
    assert decided_at == [7]  # the 8th packet, both directions counted
    assert outcomes[7].decision == Decision("unknown", "give-up", "tcp/9999")


def test_port_only_app_after_max_packets(classifier: Classifier) -> None:
    packets = handshake(40008, 3389) + [tcp(CLIENT, SERVER, 40008, 3389, "PA", 1001 + i * 3, b"\x03\x00\x00")
                                        for i in range(5)]
    assert feed(classifier, packets) == [Decision("rdp", "port", "tcp/3389")]


def test_address_table_with_and_without_ports(classifier: Classifier) -> None:
    erp = classifier.on_packet(tcp(CLIENT, "198.51.100.5", 40009, 8443, "S", 1), 1.0)
    assert erp.decision == Decision("corp-erp", "address", "198.51.100.5")
    other_port = classifier.on_packet(tcp(CLIENT, "198.51.100.5", 40010, 80, "S", 1), 1.0)
    assert other_port.decision == Decision("office-lan", "address", "198.51.100.5")  # falls to the wider network


def test_each_flow_decides_once_and_direction_independent(classifier: Classifier) -> None:
    hello = client_hello("static.dingtalk.com")
    packets = handshake(40011, 443) + [tcp(CLIENT, SERVER, 40011, 443, "PA", 1001, hello)] * 3 + [
        tcp(SERVER, CLIENT, 443, 40011, "PA", 9001, b"\x16\x03\x03\x00\x01\x02")]
    assert len(feed(classifier, packets)) == 1
    assert classifier.flow_count == 1


def test_new_syn_on_reused_tuple_starts_new_flow(classifier: Classifier) -> None:
    first = handshake(40012, 443) + [tcp(CLIENT, SERVER, 40012, 443, "PA", 1001, client_hello("a.dingtalk.com"))]
    again = [tcp(CLIENT, SERVER, 40012, 443, "S", 77777), tcp(CLIENT, SERVER, 40012, 443, "PA", 77778,
                                                              client_hello("www.youku.com"))]
    retransmitted_syn = [tcp(CLIENT, SERVER, 40012, 443, "S", 77777)]
    assert [d.app for d in feed(classifier, first + again + retransmitted_syn)] == ["dingtalk", "youku"]


def test_wireguard_udp(classifier: Classifier) -> None:
    initiation = b"\x01\x00\x00\x00" + bytes(range(144))
    packet = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=51820) / Raw(initiation))
    assert classifier.on_packet(packet, 1.0).decision == Decision("wireguard", "signature", "wireguard")


def test_malformed_and_fragments_are_counted(classifier: Classifier) -> None:
    assert classifier.on_packet(b"\x45garbage", 1.0).decision is None
    assert classifier.on_packet(b"", 1.0).decision is None
    fragment = IP(src=CLIENT, dst=SERVER, frag=100, proto=17) / Raw(b"z" * 40)
    assert classifier.on_packet(bytes(fragment), 1.0).decision is None
    assert classifier.stats.malformed == 2 and classifier.stats.fragments == 1
    assert classifier.flow_count == 0


def test_flow_expiry_and_cap() -> None:
    classifier = Classifier(ClassifierTables.build(catalog()), flow_timeout=30.0, max_flows=100)
    for index in range(250):  # 25 hosts of 10 flows: none over its share (100 / 8), the table is
        client = f"192.0.2.{100 + index % 25}"
        classifier.on_packet(tcp(client, SERVER, 10000 + index, 9999, "S", 1), 1.0)
    assert classifier.flow_count == 100 and classifier.stats.flows_evicted == 150
    assert classifier.stats.flows_evicted_host_limit == 0
    classifier.on_packet(tcp(CLIENT, SERVER, 50000, 9999, "S", 1), 100.0)  # 99 s later: all others idle
    assert classifier.flow_count == 1 and classifier.stats.flows_expired == 100


def test_replace_tables_keeps_flows_and_rematches_learned(classifier: Classifier) -> None:
    response = IP(src="192.0.2.1", dst=CLIENT) / UDP(sport=53, dport=33335) / DNS(
        id=6, qr=1, qd=DNSQR(qname="www.youku.com"),
        an=[DNSRR(rrname="www.youku.com", type="A", rdata="203.0.113.44", ttl=600)])
    query = IP(src=CLIENT, dst="192.0.2.1") / UDP(sport=33335, dport=53) / DNS(id=6, qd=DNSQR(qname="www.youku.com"))
    classifier.on_packet(bytes(query), 1.0)
    classifier.on_packet(bytes(response), 1.0)
    classifier.on_packet(tcp(CLIENT, SERVER, 40013, 443, "S", 1000), 1.0)  # undecided flow in progress
    renamed = [Application(id="youku-video", name="Youku", category="video", domains=("youku.com",))]
    classifier.replace_tables(ClassifierTables.build(renamed))
    assert classifier.learned_app(ipaddress.IPv4Address("203.0.113.44"), 2.0) == ("youku-video", "www.youku.com")
    assert classifier.flow_count == 1  # the flow in progress (the answered lookup left the table)
    classifier.replace_tables(ClassifierTables.build([]))
    assert classifier.learned_count == 0


def test_never_raises_on_internal_error(classifier: Classifier, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*_args: object) -> None:
        raise RuntimeError("bug")
    monkeypatch.setattr(classifier, "_stream_packet", explode)
    packets = handshake(40014, 443) + [tcp(CLIENT, SERVER, 40014, 443, "PA", 1001, b"\x16\x03\x01")]
    assert feed(classifier, packets) == []
    assert classifier.stats.internal_errors == 1


def test_decided_flow_repeats_its_decision_for_the_kernel(classifier: Classifier) -> None:
    """A blocked UDP flow's first packet is dropped before conntrack confirms it, losing the
    ct mark; the next packet comes back to the classifier and must carry the decision again."""
    dht = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    packet = bytes(IP(src=CLIENT, dst=SERVER) / UDP(sport=40001, dport=7) / Raw(dht))
    first = classifier.on_packet(packet, 1.0)
    again = classifier.on_packet(packet, 1.1)
    assert first.decision == first.flow_decision == Decision("bittorrent", "signature", "bittorrent")
    assert again.decision is None and again.flow_decision == first.decision


def test_every_answer_of_a_decided_dns_flow_still_teaches_addresses(classifier: Classifier) -> None:
    def answer(rrtype: str, address: str, txid: int) -> bytes:
        return bytes(IP(src="192.0.2.1", dst=CLIENT) / UDP(sport=53, dport=33399) / DNS(
            id=txid, qr=1, qd=DNSQR(qname="www.youku.com", qtype=rrtype),
            an=DNSRR(rrname="www.youku.com", type=rrtype, ttl=300, rdata=address)))
    for txid, rrtype in ((1, "A"), (2, "AAAA")):  # a stub sends both queries before either answer
        query = IP(src=CLIENT, dst="192.0.2.1") / UDP(sport=33399, dport=53) / DNS(
            id=txid, qd=DNSQR(qname="www.youku.com", qtype=rrtype))
        classifier.on_packet(bytes(query), 1.0)
    a = classifier.on_packet(answer("A", "203.0.113.30", 1), 1.1)
    aaaa = classifier.on_packet(answer("AAAA", "2001:db8:100::30", 2), 1.2)
    assert a.decision is not None and [str(x.address) for x in a.learned] == ["203.0.113.30"]
    assert aaaa.decision is None and [str(x.address) for x in aaaa.learned] == ["2001:db8:100::30"]


def test_direction_from_the_kernel_replaces_the_syn(classifier: Classifier) -> None:
    """The daemon queues no payload-less packet, SYN included; conntrack's direction says who the client is."""
    server_first = bytes(IP(src=SERVER, dst=CLIENT) / TCP(sport=22, dport=41999, flags="PA", seq=7000, ack=1)
                         / Raw(b"SSH-2.0-OpenSSH_9.2\r\n"))
    outcome = classifier.on_packet(server_first, 1.0, from_client=False)
    assert outcome.decision is not None and outcome.decision.app == "ssh"
    summary = classifier.summary_of(server_first)
    assert summary is not None and summary.client == CLIENT and summary.server == SERVER
    hello = tcp(CLIENT, SERVER, 42000, 443, "PA", 9000, client_hello("im.dingtalk.com"))
    decided = classifier.on_packet(hello, 2.0, from_client=True)
    assert decided.decision == Decision("dingtalk", "tls-sni", "im.dingtalk.com")


def test_a_new_connection_on_an_old_tcp_5_tuple_is_classified_afresh(classifier: Classifier) -> None:
    first = tcp(CLIENT, SERVER, 42100, 443, "PA", 100, client_hello("im.dingtalk.com"))
    assert classifier.on_packet(first, 1.0, from_client=True).decision.app == "dingtalk"
    # Same ports seconds later: the kernel queues it only because its conntrack entry is new.
    second = tcp(CLIENT, SERVER, 42100, 443, "PA", 99000, client_hello("www.youku.com"))
    again = classifier.on_packet(second, 5.0, from_client=True)
    assert again.decision is not None and again.decision.app == "youku"


def test_a_calls_peer_stun_takes_the_app_of_its_relay_flow() -> None:
    """WhatsApp's ICE checks to a peer are plain STUN; the same local port talked to a WhatsApp
    relay (vendor STUN attributes) just before, so the peer flow is the same call."""
    apps = [Application(id="whatsappcall", name="WhatsApp calls", category="voice-video",
                        signatures=("stun_whatsapp",)),
            Application(id="stun", name="STUN", category="voice-video", signatures=("stun",))]
    engine = Classifier(ClassifierTables.build(apps), max_packets=4)
    cookie = b"\x21\x12\xa4\x42"
    whatsapp = b"\x08\x01\x00\x08" + cookie + bytes(12) + b"\x40\x02\x00\x04" + bytes(4)  # type 0x0801, attr 0x4002
    plain = b"\x00\x01\x00\x08" + cookie + bytes(12) + b"\x00\x08\x00\x04" + bytes(4)  # binding, MESSAGE-INTEGRITY
    relay = bytes(IP(src=CLIENT, dst="198.51.100.9") / UDP(sport=50000, dport=3478) / Raw(whatsapp))
    assert engine.on_packet(relay, 1.0, from_client=True).decision.app == "whatsappcall"
    peer = bytes(IP(src=CLIENT, dst="203.0.113.77") / UDP(sport=50000, dport=41107) / Raw(plain))
    decided = engine.on_packet(peer, 2.0, from_client=True)
    assert decided.decision is not None and decided.decision.app == "whatsappcall"
    stranger = bytes(IP(src=CLIENT, dst="203.0.113.78") / UDP(sport=50001, dport=41108) / Raw(plain))
    outcomes = [engine.on_packet(stranger, 3.0 + i, from_client=True) for i in range(4)]
    assert [o.decision.app for o in outcomes if o.decision] == ["stun"]  # plain STUN alone: generic, after a wait
