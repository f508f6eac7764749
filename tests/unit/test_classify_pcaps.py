"""The classifier on real labelled captures from nDPI's test suite (../shared/pcaps, see gatewayd.lab.captures).

Captures are read with dpkt (tests only), the link layer is stripped here, and
the bare IP packets go through Classifier.on_packet exactly as NFQUEUE would
hand them over. Labels come from labels.jsonl (nDPI 4.11-dev's opinion).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest

from gatewayd.classify.capture import (
    ip_of_frame,  # link layers; dpkt reads the files independently
)
from gatewayd.classify.engine import Classifier, Decision
from gatewayd.classify.packet import parse_packet
from gatewayd.classify.tables import ClassifierTables
from gatewayd.lab.captures import DEVELOPMENT_SET, capture_set
from gatewayd.policy.model import Application, PortMatch

PCAPS = capture_set(DEVELOPMENT_SET)
pytestmark = pytest.mark.captures(DEVELOPMENT_SET)

FlowKey = tuple[str, frozenset[tuple[str, int]]]


def read_ip_packets(path: Path) -> Iterator[tuple[float, bytes]]:
    with path.open("rb") as handle:
        try:
            reader = dpkt.pcap.Reader(handle)
        except ValueError:
            handle.seek(0)
            reader = dpkt.pcapng.Reader(handle)
        datalink = reader.datalink()
        for timestamp, frame in reader:
            packet = ip_of_frame(datalink, frame)
            if packet:
                yield float(timestamp), packet


def flow_key_of(packet: bytes) -> FlowKey | None:
    info = parse_packet(packet)
    if info is None or not info.l4_present:
        return None
    proto = {6: "tcp", 17: "udp"}.get(info.proto, str(info.proto))
    endpoints = frozenset({(str(ipaddress.ip_address(info.src)), info.sport),
                           (str(ipaddress.ip_address(info.dst)), info.dport)})
    return proto, endpoints


def classify_capture(name: str, apps: list[Application]) -> tuple[dict[FlowKey, Decision], Classifier]:
    """First decision of every flow in the capture (replayed with its own timestamps)."""
    classifier = Classifier(ClassifierTables.build(apps), max_packets=8)
    decisions: dict[FlowKey, Decision] = {}
    for timestamp, packet in read_ip_packets(PCAPS / name):
        outcome = classifier.on_packet(packet, timestamp)
        if outcome.decision is not None:
            key = flow_key_of(packet)
            if key is not None:
                decisions.setdefault(key, outcome.decision)
    return decisions, classifier


def labels(name: str) -> list[dict]:
    with (PCAPS / "labels.jsonl").open() as handle:
        rows = [json.loads(line) for line in handle]
    return [row for row in rows if row["pcap"] == name and row["proto"] in ("tcp", "udp")]


def label_key(row: dict) -> FlowKey:
    return row["proto"], frozenset({(row["src"], row["sport"]), (row["dst"], row["dport"])})


def test_catalog() -> list[Application]:
    """A small catalog for these captures (the real one lives elsewhere)."""
    return [
        # 47.246.128.0/18 stands in for nDPI's DingTalk dissector (a proprietary binary protocol
        # we have no signature for): it exercises the address path on a real flow.
        Application(id="dingtalk", name="DingTalk", category="im", domains=("dingtalk.com",),
                    networks=(ipaddress.ip_network("47.246.128.0/18"),), ports=(PortMatch("tcp", 443, 443),)),
        Application(id="netflix", name="Netflix", category="video",
                    domains=("netflix.com", "nflximg.net", "nflximg.com", "nflxvideo.net", "nflxext.com",
                             "nflxso.net")),
        Application(id="youtube", name="YouTube", category="video",
                    domains=("youtube.com", "googlevideo.com", "ytimg.com")),
        Application(id="google", name="Google", category="web",
                    domains=("google.com", "googleapis.com", "gstatic.com")),
        Application(id="whatsapp", name="WhatsApp", category="im", domains=("whatsapp.net", "whatsapp.com")),
        Application(id="bittorrent", name="BitTorrent", category="p2p", signatures=("bittorrent",)),
        Application(id="ssh", name="SSH", category="remote", signatures=("ssh",), ports=(PortMatch("tcp", 22, 22),)),
        Application(id="dns", name="DNS", category="dns", ports=(PortMatch("udp", 53, 53),)),
    ]


test_catalog.__test__ = False  # a helper, not a test


def assert_labelled(name: str, expected_methods: dict[str, set[str]]) -> None:
    decisions, classifier = classify_capture(name, test_catalog())
    assert classifier.stats.internal_errors == 0
    checked = 0
    for row in labels(name):
        if row["app"] not in expected_methods:
            continue
        decision = decisions.get(label_key(row))
        assert decision is not None, f"{name}: flow {row['flow_no']} ({row['hostname']}) never decided"
        assert decision.app == row["app"], f"{name}: flow {row['flow_no']} {row['hostname']}: {decision}"
        assert decision.method in expected_methods[row["app"]], f"{name}: flow {row['flow_no']}: {decision}"
        checked += 1
    assert checked > 0


def test_dingtalk_sni_and_address() -> None:
    decisions, _ = classify_capture("dingtalk.pcap", test_catalog())
    by_server = {next(ip for ip, port in key[1] if port == 443): d for key, d in decisions.items()}
    assert by_server["104.166.182.25"] == Decision("dingtalk", "tls-sni", "static.dingtalk.com")
    assert by_server["47.246.133.39"] == Decision("dingtalk", "address", "47.246.133.39")
    assert_labelled("dingtalk.pcap", {"dingtalk": {"tls-sni", "address"}})


def test_bittorrent_signature() -> None:
    assert_labelled("bittorrent.pcap", {"bittorrent": {"signature"}})


def test_netflix_sni_host_and_dns() -> None:
    # DNS answers precede most connections, so some flows are already known by address.
    assert_labelled("netflix.pcap", {"netflix": {"tls-sni", "http-host", "dns", "dns-learned"}})
    decisions, _ = classify_capture("netflix.pcap", test_catalog())
    methods = {decisions[label_key(row)].method for row in labels("netflix.pcap") if row["app"] == "netflix"}
    assert {"tls-sni", "http-host", "dns"} <= methods
    # nDPI's plain "HTTP" flows name their server by IP address: no app, but decided on the Host.
    for row in labels("netflix.pcap"):
        if row["app"] == "http":
            assert decisions[label_key(row)] == Decision("unknown", "http-host", row["hostname"])


def test_dns_queried_app_and_learning() -> None:
    assert_labelled("dns.pcap", {"whatsapp": {"dns"}, "google": {"dns"}})


def test_http_host() -> None:
    assert_labelled("http.pcapng", {"google": {"http-host"}})


def test_ssh_signature_also_on_non_standard_port() -> None:
    assert_labelled("ssh.pcap", {"ssh": {"signature"}})


def test_every_capture_replays_without_internal_errors() -> None:
    """Robustness on all 106 real captures: nothing raises, nothing hits the never-raise guard."""
    total_packets = 0
    for path in sorted(PCAPS.glob("*.pcap*")):
        classifier = Classifier(ClassifierTables.build(test_catalog()))
        for timestamp, packet in read_ip_packets(path):
            classifier.on_packet(packet, timestamp)
        assert classifier.stats.internal_errors == 0, path.name
        total_packets += classifier.stats.packets
    assert total_packets > 10_000
