"""DNS learning that nobody on the LAN can poison (classify/dns_learning.py through the engine).

An answer teaches only if it comes from a resolver the kernel vouches for and
matches a query seen on its flow; a catalog address is never learned; a newer
matching answer changes an entry's app; one client's learning is bounded.
"""

from __future__ import annotations

import ipaddress

from scapy.all import DNS, DNSQR, DNSRR, IP, TCP, UDP

from gatewayd.classify.dns_learning import (
    CATALOG_ADDRESS,
    HOST_SHARE,
    LEARNED,
    MISMATCH,
    NOT_A_RESOLVER,
    RATE_LIMITED,
    REFUSED,
    UNSOLICITED,
    AnswerOrigin,
    LearnedAddresses,
    Learning,
)
from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.tables import ClassifierTables
from gatewayd.policy.model import Application, PortMatch

RESOLVER = "198.51.100.53"
GUEST = "192.0.2.200"
FINANCE = "192.0.2.130"
YOUKU_SERVER = "203.0.113.30"
ERP_SERVER = "203.0.113.20"
CRM_SERVER = "203.0.113.21"


def catalog() -> list[Application]:
    return [
        Application(id="youku", name="Youku", category="video", domains=("youku.com",)),
        Application(id="wechat", name="WeChat", category="im", domains=("wechat.com",)),
        Application(id="crm", name="CRM", category="erp-crm-oa", domains=("crm.example.com",)),
        Application(id="erp", name="ERP", category="erp-crm-oa", domains=("erp.example.com",),
                    networks=(ipaddress.ip_network(f"{ERP_SERVER}/32"),)),
        Application(id="portal", name="Portal", category="web", domains=("portal.example.com",),
                    networks=(ipaddress.ip_network("203.0.113.40/32"),), ports=(PortMatch("tcp", 8443, 8443),)),
    ]


def classifier(learned: LearnedAddresses | None = None) -> Classifier:
    return Classifier(ClassifierTables.build(catalog()), learned=learned)


def query(client: str, port: int, txid: int, name: str, qtype: str = "A") -> bytes:
    return bytes(IP(src=client, dst=RESOLVER) / UDP(sport=port, dport=53)
                 / DNS(id=txid, qd=DNSQR(qname=name, qtype=qtype)))


def answer(client: str, port: int, txid: int, name: str, address: str, qtype: str = "A", ttl: int = 300,
           source: str = RESOLVER) -> bytes:
    return bytes(IP(src=source, dst=client) / UDP(sport=53, dport=port) / DNS(
        id=txid, qr=1, qd=DNSQR(qname=name, qtype=qtype), an=DNSRR(rrname=name, type=qtype, rdata=address, ttl=ttl)))


def learned_addresses(engine: Classifier, packet: bytes, now: float,
                      origin: AnswerOrigin = AnswerOrigin.NAMED_RESOLVER) -> list[tuple[str, str]]:
    return [(str(e.address), e.app) for e in engine.on_packet(packet, now, answer_origin=origin).learned]


def app_of(engine: Classifier, address: str, now: float) -> str | None:
    found = engine.learned_app(ipaddress.ip_address(address), now)
    return None if found is None else found[0]


def test_an_answer_nobody_asked_for_teaches_nothing() -> None:
    engine = classifier()
    assert learned_addresses(engine, answer(GUEST, 40000, 7, "erp.example.com", YOUKU_SERVER), 1.0) == []
    assert app_of(engine, YOUKU_SERVER, 2.0) is None
    assert engine.dns_stats.answers[UNSOLICITED] == 1


def test_only_the_answer_with_the_query_id_name_and_type_teaches_and_only_once() -> None:
    engine = classifier()
    engine.on_packet(query(FINANCE, 40001, 0x1234, "crm.example.com"), 1.0)
    forged = [answer(FINANCE, 40001, 0x4321, "crm.example.com", YOUKU_SERVER),  # off-path: wrong id
              answer(FINANCE, 40001, 0x1234, "web.wechat.com", CRM_SERVER),  # right id, another question
              answer(FINANCE, 40001, 0x1234, "crm.example.com", "2001:db8:100::21", qtype="AAAA")]
    for packet in forged:
        assert learned_addresses(engine, packet, 1.1) == []
    assert engine.dns_stats.answers[MISMATCH] == 3
    genuine = answer(FINANCE, 40001, 0x1234, "crm.example.com", CRM_SERVER)
    assert learned_addresses(engine, genuine, 1.2) == [(CRM_SERVER, "crm")]
    # The query is consumed: the same answer replayed (or a second forgery) finds nothing to match.
    assert learned_addresses(engine, answer(FINANCE, 40001, 0x1234, "crm.example.com", YOUKU_SERVER), 1.3) == []
    assert engine.dns_stats.answers[UNSOLICITED] == 1
    assert app_of(engine, CRM_SERVER, 2.0) == "crm" and app_of(engine, YOUKU_SERVER, 2.0) is None


def test_a_query_on_another_flow_does_not_vouch_for_an_answer() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40002, 9, "www.youku.com"), 1.0)
    # Same id and question, but to another client port: not the same flow.
    assert learned_addresses(engine, answer(GUEST, 40003, 9, "www.youku.com", YOUKU_SERVER), 1.1) == []


def test_a_query_waits_only_so_long() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40004, 10, "www.youku.com"), 1.0)
    assert learned_addresses(engine, answer(GUEST, 40004, 10, "www.youku.com", YOUKU_SERVER), 20.0) == []


def test_answers_from_servers_the_policy_does_not_name_never_teach() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40005, 11, "erp.example.com"), 1.0)
    rogue = answer(GUEST, 40005, 11, "erp.example.com", YOUKU_SERVER)
    assert learned_addresses(engine, rogue, 1.1, AnswerOrigin.OTHER) == []
    assert engine.dns_stats.answers[NOT_A_RESOLVER] == 1


def test_the_routers_own_resolver_teaches_without_a_query_seen() -> None:
    # Its queries reach the router's input hook, not the classifier; its answers leave the
    # router itself, where nothing on the LAN can forge one.
    engine = classifier()
    packet = answer(GUEST, 40006, 12, "www.youku.com", YOUKU_SERVER, source="192.0.2.1")
    assert learned_addresses(engine, packet, 1.0, AnswerOrigin.ROUTER) == [(YOUKU_SERVER, "youku")]


def test_an_address_the_catalog_lists_is_never_learned_for_another_app() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40007, 13, "www.youku.com"), 1.0)
    # Even a genuine answer (say, a shared CDN address) cannot make the ERP server Youku.
    assert learned_addresses(engine, answer(GUEST, 40007, 13, "www.youku.com", ERP_SERVER), 1.1) == []
    assert engine.dns_stats.answers[REFUSED] == 1 and engine.dns_stats.refused[CATALOG_ADDRESS] == 1
    first = engine.on_packet(bytes(IP(src=GUEST, dst=ERP_SERVER) / TCP(sport=50000, dport=443, flags="S")), 2.0)
    assert first.decision == Decision("erp", "address", ERP_SERVER)


def test_an_address_listed_only_with_ports_is_learned_for_its_other_ports() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40008, 14, "www.youku.com"), 1.0)
    assert learned_addresses(engine, answer(GUEST, 40008, 14, "www.youku.com", "203.0.113.40"), 1.1) == [
        ("203.0.113.40", "youku")]
    syn = IP(src=GUEST, dst="203.0.113.40") / TCP(sport=50001, dport=8443, flags="S")
    on_its_port = engine.on_packet(bytes(syn), 2.0)
    assert on_its_port.decision == Decision("portal", "address", "203.0.113.40")


def test_a_catalog_that_starts_listing_a_learned_address_takes_it_over() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40009, 15, "www.youku.com"), 1.0)
    learned_addresses(engine, answer(GUEST, 40009, 15, "www.youku.com", "203.0.113.99"), 1.1)
    listed = [*catalog(), Application(id="cdn", name="CDN", category="web",
                                      networks=(ipaddress.ip_network("203.0.113.96/29"),))]
    engine.replace_tables(ClassifierTables.build(listed))
    assert app_of(engine, "203.0.113.99", 2.0) is None


def test_a_newer_matching_answer_changes_the_app_of_an_address() -> None:
    engine = classifier()
    engine.on_packet(query(FINANCE, 40010, 16, "crm.example.com"), 1.0)
    engine.on_packet(answer(FINANCE, 40010, 16, "crm.example.com", "203.0.113.77"), 1.1)
    engine.on_packet(query(FINANCE, 40011, 17, "web.wechat.com"), 5.0)
    outcome = engine.on_packet(answer(FINANCE, 40011, 17, "web.wechat.com", "203.0.113.77"), 5.1)
    assert [(str(e.address), e.app, e.changed) for e in outcome.learned] == [("203.0.113.77", "wechat", True)]
    assert app_of(engine, "203.0.113.77", 6.0) == "wechat"
    # The same fact again is a refresh, not a change.
    engine.on_packet(query(FINANCE, 40012, 18, "web.wechat.com"), 7.0)
    again = engine.on_packet(answer(FINANCE, 40012, 18, "web.wechat.com", "203.0.113.77"), 7.1)
    assert [e.changed for e in again.learned] == [False]


def test_dns_over_tcp_matches_each_pipelined_query() -> None:
    engine = classifier()
    queries = b"".join(len(m).to_bytes(2, "big") + m for m in (
        bytes(DNS(id=21, qd=DNSQR(qname="www.youku.com"))), bytes(DNS(id=22, qd=DNSQR(qname="crm.example.com")))))
    answers = b"".join(len(m).to_bytes(2, "big") + m for m in (
        bytes(DNS(id=21, qr=1, qd=DNSQR(qname="www.youku.com"), an=DNSRR(rrname="www.youku.com", rdata=YOUKU_SERVER))),
        bytes(DNS(id=22, qr=1, qd=DNSQR(qname="crm.example.com"),
                  an=DNSRR(rrname="crm.example.com", rdata=CRM_SERVER)))))
    engine.on_packet(bytes(IP(src=FINANCE, dst=RESOLVER) / TCP(sport=40013, dport=53, flags="PA", seq=1) / queries),
                     1.0, from_client=True)
    learned = []
    for offset, part in ((0, answers[:30]), (30, answers[30:])):  # the second answer arrives in two segments
        packet = IP(src=RESOLVER, dst=FINANCE) / TCP(sport=53, dport=40013, flags="PA", seq=100 + offset) / part
        learned += learned_addresses(engine, bytes(packet), 1.1 + offset / 1000)
    assert learned == [(YOUKU_SERVER, "youku"), (CRM_SERVER, "crm")]


def test_one_client_learns_at_most_its_rate_and_others_still_learn() -> None:
    engine = classifier(LearnedAddresses(capacity=1000, rate_per_minute=60, burst=3))
    for index in range(5):
        engine.on_packet(query(GUEST, 41000 + index, index, f"v{index}.youku.com"), 1.0)
        engine.on_packet(answer(GUEST, 41000 + index, index, f"v{index}.youku.com", f"203.0.113.{100 + index}"), 1.0)
    assert [app_of(engine, f"203.0.113.{100 + i}", 1.5) for i in range(5)] == ["youku"] * 3 + [None] * 2
    assert engine.dns_stats.refused[RATE_LIMITED] == 2
    engine.on_packet(query(FINANCE, 42000, 1, "crm.example.com"), 1.0)
    engine.on_packet(answer(FINANCE, 42000, 1, "crm.example.com", CRM_SERVER), 1.0)
    assert app_of(engine, CRM_SERVER, 1.5) == "crm"
    # A token a second comes back.
    engine.on_packet(query(GUEST, 41010, 10, "v10.youku.com"), 2.1)
    engine.on_packet(answer(GUEST, 41010, 10, "v10.youku.com", "203.0.113.110"), 2.1)
    assert app_of(engine, "203.0.113.110", 2.5) == "youku"


def test_one_client_holds_at_most_its_share_of_the_map_until_its_entries_expire() -> None:
    memory = LearnedAddresses(capacity=8, rate_per_minute=6000, burst=100, client_share=2)
    guest, finance = ipaddress.ip_address(GUEST).packed, ipaddress.ip_address(FINANCE).packed
    assert memory.learn(b"\x01\x01\x01\x01", "youku", "a.youku.com", guest, 40.0, 1.0) is Learning.NEW
    assert memory.learn(b"\x01\x01\x01\x02", "youku", "b.youku.com", guest, 100.0, 1.0) is Learning.NEW
    assert memory.learn(b"\x01\x01\x01\x03", "youku", "c.youku.com", guest, 100.0, 1.0) == HOST_SHARE
    assert memory.learn(b"\x02\x02\x02\x02", "crm", "crm.example.com", finance, 100.0, 1.0) is Learning.NEW
    assert memory.held_by(guest) == 2 and memory.held_by(finance) == 1
    # Its first entry has expired by 50 s: that makes room.
    assert memory.learn(b"\x01\x01\x01\x03", "youku", "c.youku.com", guest, 100.0, 50.0) is Learning.NEW
    assert memory.held_by(guest) == 2


def test_evicted_entries_leave_their_clients_share() -> None:
    memory = LearnedAddresses(capacity=2, rate_per_minute=6000, burst=100, client_share=2)
    guest, finance = b"\xc0\x00\x02\xc8", b"\xc0\x00\x02\x82"
    memory.learn(b"\x01\x01\x01\x01", "youku", "a.youku.com", guest, 100.0, 1.0)
    memory.learn(b"\x01\x01\x01\x02", "youku", "b.youku.com", guest, 100.0, 1.0)
    memory.learn(b"\x02\x02\x02\x02", "crm", "crm.example.com", finance, 100.0, 1.0)  # evicts the guest's oldest
    assert memory.held_by(guest) == 1 and memory.held_by(finance) == 1 and len(memory) == 2


def test_learning_results_are_counted_per_answer() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 43000, 1, "www.youku.com"), 1.0)
    engine.on_packet(answer(GUEST, 43000, 1, "www.youku.com", YOUKU_SERVER), 1.1)
    assert engine.dns_stats.answers[LEARNED] == 1
    assert sum(engine.dns_stats.answers.values()) == 1


# --- an answered lookup is forgotten: a host resolving many names does not fill the flow table ---


def test_each_answered_lookup_leaves_the_flow_table_and_still_teaches() -> None:
    engine = classifier()
    for n in range(200):  # a stub asks each name from a port of its own
        engine.on_packet(query(GUEST, 20000 + n, n, f"n{n}.youku.com"), 1.0 + n / 1000)
        assert engine.flow_count == 1  # the query waits for its answer
        assert learned_addresses(engine, answer(GUEST, 20000 + n, n, f"n{n}.youku.com", f"198.51.100.{n}"),
                                 1.0 + n / 1000) == [(f"198.51.100.{n}", "youku")]
        assert engine.flow_count == 0
    assert engine.stats.dns_lookups_done == 200 and engine.dns_stats.answers[LEARNED] == 200


def test_a_lookup_with_two_questions_at_once_is_kept_until_both_are_answered() -> None:
    engine = classifier()
    engine.on_packet(query(FINANCE, 40020, 31, "crm.example.com"), 1.0)
    engine.on_packet(query(FINANCE, 40020, 32, "crm.example.com", qtype="AAAA"), 1.0)  # glibc: A and AAAA
    assert learned_addresses(engine, answer(FINANCE, 40020, 31, "crm.example.com", CRM_SERVER), 1.1) \
        == [(CRM_SERVER, "crm")]
    assert engine.flow_count == 1  # the AAAA query still waits: forgetting it would refuse its answer
    aaaa = answer(FINANCE, 40020, 32, "crm.example.com", "2001:db8:100::21", qtype="AAAA")
    assert learned_addresses(engine, aaaa, 1.2) == [("2001:db8:100::21", "crm")]
    assert engine.flow_count == 0


def test_a_forgotten_lookups_port_reused_teaches_only_what_it_asks_again() -> None:
    engine = classifier()
    engine.on_packet(query(FINANCE, 40021, 41, "crm.example.com"), 1.0)
    learned_addresses(engine, answer(FINANCE, 40021, 41, "crm.example.com", CRM_SERVER), 1.1)
    assert engine.flow_count == 0
    # The same answer again (replayed, or forged) matches nothing: the flow made for it has no query.
    assert learned_addresses(engine, answer(FINANCE, 40021, 41, "crm.example.com", YOUKU_SERVER), 1.2) == []
    assert engine.dns_stats.answers[UNSOLICITED] == 1 and app_of(engine, YOUKU_SERVER, 2.0) is None
    # A new query on the same 5-tuple is remembered by the new flow: its answer teaches.
    engine.on_packet(query(FINANCE, 40021, 42, "www.youku.com"), 1.3)
    assert learned_addresses(engine, answer(FINANCE, 40021, 42, "www.youku.com", YOUKU_SERVER), 1.4) \
        == [(YOUKU_SERVER, "youku")]
    assert engine.flow_count == 0


def test_a_half_read_tcp_answer_keeps_its_flow() -> None:
    engine = classifier()
    message = bytes(DNS(id=51, qr=1, qd=DNSQR(qname="www.youku.com"),
                        an=DNSRR(rrname="www.youku.com", rdata=YOUKU_SERVER)))
    answers = len(message).to_bytes(2, "big") + message
    ask = bytes(DNS(id=51, qd=DNSQR(qname="www.youku.com")))
    engine.on_packet(bytes(IP(src=FINANCE, dst=RESOLVER) / TCP(sport=40022, dport=53, flags="PA", seq=1)
                           / (len(ask).to_bytes(2, "big") + ask)), 1.0, from_client=True)
    first = IP(src=RESOLVER, dst=FINANCE) / TCP(sport=53, dport=40022, flags="PA", seq=100) / answers[:20]
    assert learned_addresses(engine, bytes(first), 1.1) == []
    assert engine.flow_count == 1
    rest = IP(src=RESOLVER, dst=FINANCE) / TCP(sport=53, dport=40022, flags="PA", seq=120) / answers[20:]
    assert learned_addresses(engine, bytes(rest), 1.2) == [(YOUKU_SERVER, "youku")]
    assert engine.flow_count == 0


def test_a_lookup_to_another_resolver_is_forgotten_once_answered_and_offline_replay_keeps_flows() -> None:
    engine = classifier()
    engine.on_packet(query(GUEST, 40023, 61, "erp.example.com"), 1.0)
    outcome = engine.on_packet(answer(GUEST, 40023, 61, "erp.example.com", YOUKU_SERVER), 1.1,
                               answer_origin=AnswerOrigin.OTHER)
    assert outcome.decision is not None and outcome.decision.method == "dns"  # the verdict still goes out
    assert engine.flow_count == 0  # decided in the ct mark: the kernel queues no more of it
    offline = Classifier(ClassifierTables.build(catalog()), forget_answered_lookups=False)
    offline.on_packet(query(GUEST, 40023, 61, "erp.example.com"), 1.0)
    offline.on_packet(answer(GUEST, 40023, 61, "erp.example.com", ERP_SERVER), 1.1)
    assert offline.flow_count == 1
