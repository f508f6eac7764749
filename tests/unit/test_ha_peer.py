"""The HA pair's own report: this node's VRRP state (ha-notify's file) and the peer's, over the sync link."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gatewayd.apply.ha_state import read_state, write_state
from gatewayd.cli.status import render_ha
from gatewayd.daemon.ha_peer import PEER_SILENT_SECONDS, HaPeer, policy_file_hash
from gatewayd.metrics.daemon_state import DaemonMetrics
from gatewayd.policy.model import HaNode, HaPair

# Loopback stands for the sync link: both addresses are local, so each peer is named outright.
PAIR = HaPair((HaNode("gw-a", 150, ipaddress.ip_address("127.0.0.1")),
               HaNode("gw-b", 100, ipaddress.ip_address("127.0.0.2"))),
              "sync0", (), (), 51, 100)


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[HaPeer, HaPeer]]:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = HaPeer(tmp_path / "a", local_node="gw-a"), HaPeer(tmp_path / "b", local_node="gw-b")
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def exchange(a: HaPeer, b: HaPeer) -> None:
    """Each sends its heartbeat, then each reads the other's (bounded: a few rounds)."""
    now = time.monotonic()
    for round_number in range(20):
        a.poll(now + round_number * 10)
        b.poll(now + round_number * 10)
        if a.heard is not None and b.heard is not None:
            return
        time.sleep(0.01)


def test_state_file_round_trip_and_anything_else_reads_as_unknown(tmp_path: Path) -> None:
    assert read_state(tmp_path) == "unknown"
    write_state(tmp_path, "master")
    assert read_state(tmp_path) == "master"
    (tmp_path / "vrrp-state").write_text("garbage\n")
    assert read_state(tmp_path) == "unknown"


def test_each_node_hears_the_peers_state_and_compares_policy_hashes(peers: tuple[HaPeer, HaPeer]) -> None:
    a, b = peers
    write_state(a.runtime_dir, "master")
    write_state(b.runtime_dir, "backup")
    a.adopt(PAIR, "hash-1")
    b.adopt(PAIR, "hash-1")
    exchange(a, b)
    assert a.report() == {"node": "gw-a", "state": "master", "peer": "gw-b", "peer_state": "backup",
                          "policy_hash": "hash-1", "same_policy": True}
    assert b.peer_state() == "master" and b.same_policy() is True
    b.adopt(PAIR, "hash-2")  # a reload to another file: told at once
    b.heard = None
    exchange(a, b)
    assert a.same_policy() is False and b.same_policy() is False


def test_a_silent_peer_becomes_unknown_and_is_not_compared(peers: tuple[HaPeer, HaPeer]) -> None:
    a, b = peers
    a.adopt(PAIR, "hash-1")
    b.adopt(PAIR, "hash-1")
    exchange(a, b)
    assert a.heard is not None
    later = a.heard.at + PEER_SILENT_SECONDS + 0.1
    assert a.peer_state(later) == "unknown" and a.same_policy(later) is None


def test_datagrams_not_from_the_peer_or_too_big_are_ignored(peers: tuple[HaPeer, HaPeer]) -> None:
    a, _ = peers
    a.adopt(PAIR, "hash-1")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        stranger.bind(("127.0.0.3", 0))
        stranger.sendto(b'{"node": "gw-b", "state": "master", "policy_hash": "x"}', ("127.0.0.1", 3781))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.2", 0))
        peer.sendto(b'{"node": "gw-b", "state": "master", "policy_hash": "' + b"x" * 600 + b'"}',
                    ("127.0.0.1", 3781))
        peer.sendto(b"not json", ("127.0.0.1", 3781))
    time.sleep(0.05)
    a.poll()
    assert a.heard is None


def test_without_an_ha_section_there_is_no_report(tmp_path: Path) -> None:
    peer = HaPeer(tmp_path)
    peer.adopt(None, "hash")
    assert peer.report() is None and peer.fds() == [] and render_ha(None) == []


def test_policy_hash_is_of_the_files_bytes(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("version: 1\n")
    assert policy_file_hash(str(tmp_path / "p.yaml")) == hashlib.sha256(b"version: 1\n").hexdigest()
    (tmp_path / "q.yaml").write_text("version: 1\n# another\n")
    assert policy_file_hash(str(tmp_path / "p.yaml")) != policy_file_hash(str(tmp_path / "q.yaml"))
    assert policy_file_hash(str(tmp_path / "missing.yaml")) == ""


def test_status_line_and_metrics_say_master_backup_and_a_different_policy() -> None:
    report = {"node": "gw-b", "state": "backup", "peer": "gw-a", "peer_state": "master",
              "policy_hash": "0123456789abcdef", "same_policy": False}
    assert render_ha(report) == ["ha          node gw-b backup   peer gw-a master   DIFFERENT POLICY "
                                 "(sha256 0123456789ab)"]
    registry = CollectorRegistry()
    metrics = DaemonMetrics(registry)
    metrics.set_ha("backup", "master", False)
    assert registry.get_sample_value("gatewayd_ha_state", {"state": "backup"}) == 1
    assert registry.get_sample_value("gatewayd_ha_state", {"state": "master"}) == 0
    assert registry.get_sample_value("gatewayd_ha_peer_state", {"state": "master"}) == 1
    assert registry.get_sample_value("gatewayd_ha_policy_hash_match") == 0
    metrics.set_ha("master", "unknown", None)
    assert registry.get_sample_value("gatewayd_ha_policy_hash_match") == 0
    assert registry.get_sample_value("gatewayd_ha_peer_state", {"state": "unknown"}) == 1
