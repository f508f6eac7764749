"""Memory one LAN host can take in the classifier (gatewayd.classify.flow_budget + engine).

The abuse: one host opens many flows, each sending a few segments of a TLS
ClientHello it never finishes. Its buffers stay under its budget, its own
oldest flows are given up (and counted), and another host's flow is still
classified.
"""

from __future__ import annotations

import ipaddress
import struct

from gatewayd.classify.engine import Classifier, Decision, PacketOutcome
from gatewayd.classify.flow_budget import MIB, FlowBudget, HostLedger
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.hello_flood import unfinished_hello
from tests.unit.test_classify_engine import SERVER, catalog, client_hello, tcp

ABUSER = "192.0.2.66"
NEIGHBOUR = "192.0.2.77"
SEGMENT = 1000
GIVE_UP_443 = Decision("unknown", "give-up", "tcp/443")


def raw_tcp(src: str, dst: str, sport: int, dport: int, seq: int, payload: bytes) -> bytes:
    """An IPv4/TCP packet built by hand (scapy is too slow for thousands); checksums are not read."""
    total = 40 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    return ip + struct.pack("!HHIIBBHHH", sport, dport, seq, 1, 5 << 4, 0x18, 65535, 0, 0) + payload


def send(classifier: Classifier, client: str, sport: int, segments: list[bytes], now: float,
         seq: int = 1000) -> list[PacketOutcome]:
    """Client->server segments in order, direction told as the kernel tells it (no SYN is queued)."""
    outcomes = []
    for segment in segments:
        outcomes.append(classifier.on_packet(raw_tcp(client, SERVER, sport, 443, seq, segment), now, True))
        seq += len(segment)
    return outcomes


def tables() -> ClassifierTables:
    return ClassifierTables.build(catalog())


def test_a_host_stays_under_its_budget_and_pays_with_its_own_oldest_flows() -> None:
    budget = FlowBudget(total_bytes=MIB, host_bytes=10_000, host_flows=1000)
    classifier = Classifier(tables(), max_packets=8, budget=budget)
    for flow in range(40):  # 40 flows x 3,000 bytes offered, 10,000 allowed
        outcomes = send(classifier, ABUSER, 20000 + flow, unfinished_hello(3, SEGMENT), 1.0 + flow * 0.01)
        assert classifier.buffered_bytes <= 10_000
        assert all(o.decision is None for o in outcomes)  # an older flow paid, not this one
    # From the 4th flow on, each one's second segment pushed the oldest flow out.
    assert classifier.stats.flows_given_up_host_budget == 37
    assert classifier.stats.flows_given_up_total_budget == 0
    assert classifier.buffered_bytes == 9_000  # the three newest flows
    assert classifier.flow_count == 40  # given up, not forgotten: the verdict is still to be sent

    # The oldest flow's next packet takes its verdict to the kernel (the one max_packets would give),
    # and is not mistaken for a new connection on an old 5-tuple.
    fourth_segment = unfinished_hello(4, SEGMENT)[3:]
    first = send(classifier, ABUSER, 20000, fourth_segment, 2.0, seq=1000 + 3 * SEGMENT)[0]
    assert first.decision == first.flow_decision == GIVE_UP_443
    # A flow still inside the budget is untouched.
    newest = send(classifier, ABUSER, 20039, fourth_segment, 2.0, seq=1000 + 3 * SEGMENT)
    assert newest[0].decision is None and newest[0].flow_decision is None

    # Another host's ClientHello, split in two, is still reassembled and classified.
    hello = client_hello("static.dingtalk.com")
    neighbour = send(classifier, NEIGHBOUR, 30000, [hello[:40], hello[40:]], 3.0)
    assert neighbour[0].decision is None
    assert neighbour[1].decision == Decision("dingtalk", "tls-sni", "static.dingtalk.com")
    assert classifier.buffered_bytes == 10_000  # the neighbour's 40 bytes were freed with its decision


def test_all_hosts_over_the_total_give_up_the_oldest_anywhere() -> None:
    budget = FlowBudget(total_bytes=20_000, host_bytes=10_000, host_flows=1000)
    classifier = Classifier(tables(), budget=budget)
    for index, host in enumerate(("192.0.2.10", "192.0.2.11")):
        for flow in range(3):
            send(classifier, host, 21000 + flow, unfinished_hello(3, SEGMENT), 1.0 + index + flow * 0.01)
    assert classifier.buffered_bytes == 18_000 and classifier.stats.flows_given_up_host_budget == 0
    send(classifier, "192.0.2.12", 22000, unfinished_hello(3, SEGMENT), 5.0)  # 21,000 bytes: one flow too many
    assert classifier.stats.flows_given_up_total_budget == 1
    assert classifier.stats.flows_given_up_host_budget == 0
    assert classifier.buffered_bytes == 18_000
    # It was the first host's first flow, the oldest buffer of all.
    outcome = send(classifier, "192.0.2.10", 21000, unfinished_hello(4, SEGMENT)[3:], 6.0, seq=1000 + 3 * SEGMENT)
    assert outcome[0].decision == GIVE_UP_443


def test_a_flow_over_budget_by_its_own_packet_is_given_up_with_that_packet() -> None:
    classifier = Classifier(tables(), budget=FlowBudget(total_bytes=MIB, host_bytes=2_500, host_flows=1000))
    outcomes = send(classifier, ABUSER, 23000, unfinished_hello(3, SEGMENT), 1.0)
    assert [o.decision for o in outcomes] == [None, None, GIVE_UP_443]
    assert classifier.buffered_bytes == 0 and classifier.stats.flows_given_up_host_budget == 1


def test_a_host_over_its_flow_share_evicts_its_own_oldest_flows() -> None:
    classifier = Classifier(tables(), max_flows=100)  # a host's share: 100 / 8 = 12 flows
    hello = client_hello("static.dingtalk.com")
    assert send(classifier, NEIGHBOUR, 30000, [hello[:40]], 1.0)[0].decision is None  # waits for the rest
    for flow in range(500):
        send(classifier, ABUSER, 20000 + flow, unfinished_hello(1, SEGMENT), 2.0)
    assert classifier.flow_count == 12 + 1
    assert classifier.stats.flows_evicted_host_limit == 488 and classifier.stats.flows_evicted == 0
    assert classifier.buffered_bytes == 12 * SEGMENT + 40
    # The neighbour's half hello survived: the rest completes it.
    finished = send(classifier, NEIGHBOUR, 30000, [hello[40:]], 3.0, seq=1040)
    assert finished[0].decision == Decision("dingtalk", "tls-sni", "static.dingtalk.com")


def test_a_full_table_evicts_the_heaviest_hosts_oldest_flows() -> None:
    classifier = Classifier(tables(), max_flows=30, budget=FlowBudget(host_flows=20))

    def open_flow(host: str, sport: int, now: float) -> bytes:
        packet = tcp(host, SERVER, sport, 443, "S", 1)
        classifier.on_packet(packet, now)
        return packet

    heavy = [open_flow("192.0.2.30", 40000 + i, 1.0 + i * 0.01) for i in range(20)]
    light = [open_flow("192.0.2.31", 41000 + i, 2.0) for i in range(5)]
    late = [open_flow("192.0.2.32", 42000 + i, 3.0) for i in range(10)]  # 35 flows for 30 places
    assert classifier.flow_count == 30 and classifier.stats.flows_evicted == 5
    assert [classifier.summary_of(p) is not None for p in heavy] == [False] * 5 + [True] * 15
    assert all(classifier.summary_of(p) is not None for p in light + late)


def test_default_budget_bounds_one_host_without_configuration() -> None:
    """The issue's abuse scaled down: 500 flows x 7 segments of 1,460 bytes (5 MB offered) from one host."""
    classifier = Classifier(tables())
    segments = unfinished_hello(7, 1460)
    peak = 0
    for flow in range(500):
        send(classifier, ABUSER, 10000 + flow, segments, 1.0)
        peak = max(peak, classifier.buffered_bytes)
    assert peak <= classifier.budget.host_bytes == 4 * MIB
    assert classifier.stats.flows_given_up_host_budget > 0
    assert classifier.budget.host_flows == 65536 // 8


def test_ledger_finds_the_heaviest_host_as_counts_rise_and_fall() -> None:
    ledger = HostLedger()
    keys = {host: [(6, host, port, b"s", 443) for port in range(count)]
            for host, count in ((b"a", 3), (b"b", 5), (b"c", 1))}
    for host, host_keys in keys.items():
        for key in host_keys:
            ledger.add_flow(host, key)
    assert ledger.heaviest_host() == b"b"
    for key in keys[b"b"][:3]:
        ledger.remove_flow(b"b", key, 0)
    assert ledger.heaviest_host() == b"a"  # 3 against b's 2: a reached 3 first
    ledger.set_held(b"c", keys[b"c"][0], 0, 700)
    assert ledger.buffered_bytes == 700 and ledger.oldest_buffering() == keys[b"c"][0]
    ledger.remove_flow(b"c", keys[b"c"][0], 700)
    assert ledger.buffered_bytes == 0 and ledger.host_count() == 2
